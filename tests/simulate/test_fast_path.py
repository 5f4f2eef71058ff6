"""The incremental engine (stints, kept queues, skipped quiet rounds, policies walking only queue
heads) gives the completion times of the round-by-round engine it replaced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from test_invariants import traces

from fairshare.simulate.engine import Cluster, Snapshot, simulate
from fairshare.simulate.policies import POLICIES, make
from fairshare.simulate.trace import load_trace, synthetic

GOLDEN = json.loads((Path(__file__).parent / "data" / "golden_before_fast_path.json").read_text())["cases"]


def _case(key: str):
    trace, cluster, rounds, restart, policy = key.split("|")
    _, n, teams, rate = trace.split(":")
    return (
        synthetic(int(n), int(teams), float(rate), seed=5),
        Cluster.parse(cluster),
        float(rounds),
        float(restart),
        policy,
    )


@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_same_completion_times_as_the_round_by_round_engine(key: str) -> None:
    jobs, cluster, rounds, restart, policy = _case(key)
    # the goldens predate fitting by total share, GPU-count shares and the waiting team's margin
    params = {"fit": "type", "unit": "effective", "wait_margin": None} if policy == "fairshare" else {}
    if policy == "gavel":  # and predate grouping identical jobs
        params = {"group_identical": False}
    res = simulate(jobs, cluster, make(policy, **params), round_seconds=rounds, restart_seconds=restart)
    got = {j.id: [j.start, j.finish, j.preemptions, j.migrations] for j in res.jobs}
    want = GOLDEN[key]
    assert set(got) == set(want)
    for jid, (start, finish, preempted, moved) in want.items():
        g = got[jid]
        assert (g[0], g[1]) == (pytest.approx(start, abs=1e-6), pytest.approx(finish, abs=1e-6)), jid
        assert (g[2], g[3]) == (preempted, moved), jid


class EveryRound:
    """The same policy, called every round with nothing skipped (the slow path)."""

    def __init__(self, inner) -> None:
        self.inner, self.name = inner, inner.name
        self.stable = self.settles = False

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        return self.inner.schedule(snap)


@pytest.mark.parametrize("policy", [p for p in POLICIES if make(p).stable or getattr(make(p), "settles", False)])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces())
def test_skipping_quiet_rounds_changes_nothing(policy: str, trace) -> None:
    jobs, cluster = trace
    fast = simulate(jobs, cluster, make(policy), round_seconds=100.0, restart_seconds=30.0)
    slow = simulate(jobs, cluster, EveryRound(make(policy)), round_seconds=100.0, restart_seconds=30.0)
    assert slow.policy_calls >= fast.policy_calls
    assert [(j.id, j.start, j.finish, j.preemptions, j.migrations) for j in fast.jobs] == [
        (j.id, j.start, j.finish, j.preemptions, j.migrations) for j in slow.jobs
    ]
    assert [j.gpu_seconds for j in fast.jobs] == pytest.approx([j.gpu_seconds for j in slow.jobs])


LAZY_GOLDEN = json.loads((Path(__file__).parent / "data" / "golden_before_lazy_solve.json").read_text())["cases"]


@pytest.mark.parametrize("key", sorted(LAZY_GOLDEN))
def test_fairshare_asks_the_engine_only_when_two_types_have_room(key: str) -> None:
    """The engine's shares per type only choose between types that both have room for a gang:
    asked only then, the replay is the one of the policy that asked on every call (main at
    3dfd77d, golden_before_lazy_solve.json), job for job, and most calls ask nothing."""
    spec, seed, cluster = key.split("|")
    lazy = make("fairshare")
    res = simulate(
        load_trace(spec, seed=int(seed)), Cluster.parse(cluster), lazy, round_seconds=360.0, restart_seconds=30.0
    )
    got = {j.id: [j.start, j.finish, j.preemptions, j.migrations] for j in res.jobs}
    assert got == LAZY_GOLDEN[key]
    asked = lazy.solves + lazy.memo_hits + (lazy._engine.fitted if lazy._engine else 0)
    assert asked < res.policy_calls / 2
