"""Gavel's heterogeneity-aware max-min fairness across jobs (Narayanan et al., OSDI 2020).

Whenever the set of jobs changes, the fairshare engine solves the flat problem: every job a
request for its gang size, its speed on a type its throughput there divided by its
throughput on an average GPU of this cluster (Gavel's normalisation by the equal-share
allocation), equal weights; identical jobs (the same gang size and speeds) share as one
request weighted by their number and split equally (an interior-point solver, such as the
ECOS that Gavel calls through cvxpy, ends inside the optimal face, where identical jobs are
treated alike; `group_identical=False`: one request per job, the simplex vertex HiGHS
returns).  On flat instances the engine's result is Gavel's max-min optimum
(tests/test_engine_gavel.py), refined leximin.  The fractional result X[job, type] (share of
time on that type) is then realised round by round as Gavel does: jobs with the highest
X / (share of rounds already received there) are placed first, whole gangs only."""

from __future__ import annotations

from collections.abc import Mapping

from fairshare.engine.shares import request_shares
from fairshare.simulate.engine import JobState, Snapshot

SHARE_TOL = 1e-6  # a smaller share of a type is the solver's margin, not time there (it would rank first: x / 0)


class GavelMaxMin:
    name = "gavel"
    stable = False  # time-sharing rotates jobs between rounds

    def __init__(self, group_identical: bool = True) -> None:
        self.group_identical = group_identical  # identical jobs share as one, split equally (engine/shares.py)
        self.share: dict[str, dict[str, float]] = {}  # job -> type -> fraction of time
        self.rounds: dict[str, int] = {}
        self.received: dict[str, dict[str, int]] = {}
        self.solves = 0
        self.settles = False  # see _no_time_sharing
        self._last: tuple[float, dict[str, str]] | None = None  # the previous call's time and placement
        # job -> its request, computed once (a replay's cluster does not change)
        self._request: dict[str, tuple[int, tuple[tuple[str, float], ...]]] = {}

    def _credit_skipped(self, snap: Snapshot) -> None:
        """Count the rounds the simulator ran without calling (it skips while `settles`): every
        job then active ran them where it was placed, as it would have been round by round."""
        if self._last is None:
            return
        then, placed = self._last
        k = round((snap.now - then) / snap.round_seconds) - 1
        if k <= 0:
            return
        for job_id in self.rounds:
            self.rounds[job_id] += k
            t = placed.get(job_id)
            if t is not None:
                got = self.received.setdefault(job_id, {})
                got[t] = got.get(t, 0) + k

    def requests(self, snap: Snapshot) -> list[tuple[int, tuple[tuple[str, float], ...]]]:
        """Every job's (gang size, speed per type relative to an average GPU of this cluster),
        computed once per job (the cluster does not change during a replay)."""
        known = self._request
        out = []
        for st in snap.jobs:
            got = known.get(st.id)
            if got is None:
                got = known[st.id] = _request(st, snap.capacity)
            out.append(got)
        return out

    def _solve(self, snap: Snapshot) -> None:
        shares = request_shares(snap.capacity, self.requests(snap), self.group_identical)
        self.solves += 1
        self.share = {
            st.id: {t: n / st.job.gpus for t, n in got.items() if n / st.job.gpus > SHARE_TOL}
            for st, got in zip(snap.jobs, shares, strict=True)
        }

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        self._credit_skipped(snap)
        placement = self._schedule(snap)
        self._last = (snap.now, placement)
        self.settles = self._no_time_sharing(snap, placement)
        return placement

    def _no_time_sharing(self, snap: Snapshot, placement: dict[str, str]) -> bool:
        """Every job runs on the one type it has a share of, all the time: then the next rounds
        place every job the same way (each one's priority stays share / share received = 1) until
        a job arrives or finishes, and the simulator may run them as one step."""
        for st in snap.jobs:
            share = self.share.get(st.id, {})
            t = placement.get(st.id)
            if t is None or len(share) != 1 or share.get(t, 0.0) < 1.0 - SHARE_TOL:
                return False
        return True

    def _schedule(self, snap: Snapshot) -> dict[str, str]:
        if snap.changed or any(st.id not in self.share for st in snap.jobs):
            self._solve(snap)
        types = list(snap.capacity)
        live = {st.id for st in snap.jobs}
        for gone in [j for j in self.rounds if j not in live]:
            del self.rounds[gone], self.received[gone]
        for gone in [j for j in self._request if j not in live]:
            del self._request[gone]
        index = {t: i for i, t in enumerate(types)}
        pairs = []
        for pos, st in enumerate(snap.jobs):
            n = self.rounds.get(st.id, 0)
            got = self.received.get(st.id, {})
            for t, x in self.share[st.id].items():
                frac = got.get(t, 0) / n if n else 0.0
                prio = x / frac if frac > 0 else float("inf")
                pairs.append((-prio, -x, pos, index[t], st, t))
        pairs.sort()  # (pos, type) is unique: the order of the first four, never comparing jobs
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


def _request(st: JobState, capacity: Mapping[str, int]) -> tuple[int, tuple[tuple[str, float], ...]]:
    """The job's gang size and its speed per type over its throughput on an average GPU."""
    job = st.job
    types = list(capacity)
    avg = sum(job.rate(t) * capacity[t] for t in types) / sum(capacity.values())
    return job.gpus, tuple((t, job.rate(t) / avg) for t in types if job.rate(t) > 0)
