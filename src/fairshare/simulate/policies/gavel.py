"""Gavel's heterogeneity-aware max-min fairness across jobs (Narayanan et al., OSDI 2020).

Whenever the set of jobs changes, the fairshare engine solves the flat problem: every job a
request for its gang size, its speed on a type its throughput there divided by its
throughput on an average GPU of this cluster (Gavel's normalisation by the equal-share
allocation), equal weights.  On flat instances the engine's result is Gavel's max-min optimum
(tests/test_engine_gavel.py), refined leximin.  The fractional result X[job, type] (share of
time on that type) is then realised round by round as Gavel does: jobs with the highest
X / (share of rounds already received there) are placed first, whole gangs only."""

from __future__ import annotations

from fairshare.engine import allocate
from fairshare.scenario import OrgNode, Pool, Request, Scenario
from fairshare.simulate.engine import Snapshot


class GavelMaxMin:
    name = "gavel"
    stable = False  # time-sharing rotates jobs between rounds

    def __init__(self) -> None:
        self.share: dict[str, dict[str, float]] = {}  # job -> type -> fraction of time
        self.rounds: dict[str, int] = {}
        self.received: dict[str, dict[str, int]] = {}
        self.solves = 0

    def _solve(self, snap: Snapshot) -> None:
        types = list(snap.capacity)
        total = sum(snap.capacity.values())
        requests = []
        for i, st in enumerate(snap.jobs):
            job = st.job
            avg = sum(job.rate(t) * snap.capacity[t] for t in types) / total
            speed = {t: job.rate(t) / avg for t in types if job.rate(t) > 0}
            requests.append(Request(id=f"j{i}", team="jobs", gpus=job.gpus, speed=speed))
        scenario = Scenario(
            name="gavel-round",
            pools=[Pool(name=t, gpu=t, gpus=n) for t, n in snap.capacity.items()],
            org=OrgNode(name="jobs"),
            requests=requests,
        )
        alloc = allocate(scenario, fractional=True, check_reasons=False)
        self.solves += 1
        self.share = {}
        for st, r in zip(snap.jobs, alloc.requests, strict=True):
            self.share[st.id] = {t: n / st.job.gpus for t, n in r.gpus.items() if n > 1e-9}

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        if snap.changed or any(st.id not in self.share for st in snap.jobs):
            self._solve(snap)
        types = list(snap.capacity)
        live = {st.id for st in snap.jobs}
        for gone in [j for j in self.rounds if j not in live]:
            del self.rounds[gone], self.received[gone]
        pairs = []
        for pos, st in enumerate(snap.jobs):
            n = self.rounds.get(st.id, 0)
            got = self.received.get(st.id, {})
            for t, x in self.share[st.id].items():
                frac = got.get(t, 0) / n if n else 0.0
                prio = x / frac if frac > 0 else float("inf")
                pairs.append((-prio, -x, pos, types.index(t), st, t))
        pairs.sort(key=lambda p: p[:4])
        free = dict(snap.capacity)
        placement: dict[str, str] = {}
        for *_, st, t in pairs:
            if st.id in placement or free[t] < st.job.gpus:
                continue
            placement[st.id] = t
            free[t] -= st.job.gpus
        for st in snap.jobs:
            self.rounds[st.id] = self.rounds.get(st.id, 0) + 1
            if st.id in placement:
                got = self.received.setdefault(st.id, {})
                got[placement[st.id]] = got.get(placement[st.id], 0) + 1
        return placement
