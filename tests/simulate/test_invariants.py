"""Invariants every policy keeps on random small traces (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fairshare.simulate.engine import Cluster, Snapshot, simulate
from fairshare.simulate.policies import POLICIES, make
from fairshare.simulate.trace import Job

TYPES = ("v100", "k80")


@st.composite
def traces(draw) -> tuple[list[Job], Cluster]:
    cap = {t: draw(st.integers(1, 4)) for t in TYPES[: draw(st.integers(1, 2))]}
    biggest = max(cap.values())
    n = draw(st.integers(1, 7))
    jobs = []
    for i in range(n):
        tput = {}
        if draw(st.booleans()):
            tput = {t: draw(st.sampled_from([0.5, 1.0, 2.0])) for t in cap}
        jobs.append(
            Job(
                id=f"j{i}",
                team=draw(st.sampled_from(["a", "b", "c"])),
                arrival=float(draw(st.integers(0, 6)) * 50),
                gpus=draw(st.integers(1, biggest)),
                work=float(draw(st.integers(1, 40)) * 25),
                throughput=tput,
            )
        )
    return jobs, Cluster(cap)


class Recorder:
    """Wraps a policy; keeps every placement with the snapshot it answered."""

    def __init__(self, inner):
        self.inner, self.name, self.stable = inner, inner.name, inner.stable
        self.log: list[tuple[Snapshot, dict[str, str]]] = []

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        out = self.inner.schedule(snap)
        self.log.append((snap, dict(out)))
        return out


@pytest.mark.parametrize("policy", list(POLICIES))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces(), restart=st.sampled_from([0.0, 30.0]))
def test_no_over_allocation_gangs_whole_work_conserved_every_job_finishes(policy: str, trace, restart: float) -> None:
    jobs, cluster = trace
    rec = Recorder(make(policy))
    res = simulate(jobs, cluster, rec, round_seconds=100.0, restart_seconds=restart, max_rounds=10_000)
    by_id = {j.id: j for j in jobs}
    for snap, placement in rec.log:
        used = dict.fromkeys(cluster.gpus, 0)
        for jid, t in placement.items():
            assert by_id[jid].rate(t) > 0
            used[t] += by_id[jid].gpus  # a placed job holds its whole gang on one type
        assert all(used[t] <= cluster.gpus[t] for t in used), (snap.now, used)
    for r in res.rounds:  # what the engine actually ran
        assert all(n <= cluster.gpus[t] for t, n in r.by_type.items())
        assert sum(r.by_type.values()) == sum(r.gpus.values())
    for j in res.jobs:
        job = by_id[j.id]
        assert j.finish is not None, f"{j.id} never finished"
        assert res.work_done[j.id] == pytest.approx(job.work, rel=1e-9)
        assert j.finish >= job.arrival + job.work / job.best_rate(cluster.types) - 1e-6
        # GPU time held = gang x (work time + restart time), never less than the work needs
        assert j.gpu_seconds >= job.gpus * job.work / job.best_rate(cluster.types) - 1e-6


@settings(max_examples=15, deadline=None)
@given(trace=traces())
def test_replays_are_deterministic(trace) -> None:
    jobs, cluster = trace
    for policy in ("slurm", "fairshare"):
        a = simulate(jobs, cluster, make(policy), round_seconds=100.0)
        b = simulate(list(reversed(jobs)), cluster, make(policy), round_seconds=100.0)
        assert [(j.id, j.finish, j.preemptions) for j in a.jobs] == [(j.id, j.finish, j.preemptions) for j in b.jobs]
