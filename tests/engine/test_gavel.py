"""On a flat instance the engine's lowest E/weight is Gavel's max-min fairness optimum, to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FlatLP
from fairshare.engine import allocate
from fairshare.scenario import OrgNode, Pool, Request, Scenario


def gavel_like(n_jobs: int, seed: int, per_type: int | None = None, flat: float = 0.0) -> Scenario:
    """Jobs faster on V100 than P100 than K80 (per-job ratios), 1-8 GPUs each, oversubscribed
    (n_jobs / 8 GPUs per type unless `per_type`); a fraction `flat` of them as fast on every type."""
    rng = np.random.default_rng(seed)
    types = ["V100", "P100", "K80"]
    per_type = per_type or max(1, n_jobs // 8)
    requests = []
    for j in range(n_jobs):
        v100 = rng.uniform(0.5, 2.0)
        speed = {"V100": v100, "P100": v100 * rng.uniform(0.4, 0.7), "K80": v100 * rng.uniform(0.1, 0.3)}
        if rng.random() < flat:
            speed = dict.fromkeys(types, v100)
        requests.append(
            Request(
                id=f"j{j}",
                team="root",
                gpus=int(rng.choice([1, 1, 1, 2, 4, 8])),
                speed={k: round(v, 6) for k, v in speed.items()},
                weight=float(rng.choice([1.0, 1.0, 2.0])),
            )
        )
    return Scenario(
        name=f"gavel-{n_jobs}-{seed}",
        pools=[Pool(name=t.lower(), gpu=t, gpus=per_type) for t in types],
        org=OrgNode(name="root"),
        requests=requests,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flat_min_effective_per_weight_equals_the_max_min_lp_optimum(seed: int) -> None:
    s = gavel_like(60, seed)
    optimum = FlatLP(s).max_min_t()
    got = min(r.effective / r.weight for r in allocate(s, fractional=True).requests)
    assert got == pytest.approx(optimum, rel=1e-6)


def test_a_large_flat_group_starts_from_an_optimal_crash_basis_and_gets_the_same_result(monkeypatch) -> None:
    """2,000 jobs on 3 pools (6,000 cells: a large group): the column-generation crash basis
    (engine/crash.py) is found and HiGHS certifies it without a simplex iteration; every
    request's effective throughput is the one interior point gives without it."""
    import fairshare.engine._group as group
    from fairshare.engine._highs import LP

    s = gavel_like(2000, 3)
    runs: list[tuple[bool, int]] = []
    original = LP._run_from_crash

    def recording(lp: LP) -> bool:
        optimal = original(lp)
        runs.append((optimal, lp.h.getInfo().simplex_iteration_count))
        return optimal

    monkeypatch.setattr(LP, "_run_from_crash", recording)
    with_crash = allocate(s, fractional=True)
    assert (True, 0) in runs
    monkeypatch.setattr(group, "crash_basis", lambda g: None)
    without = allocate(s, fractional=True)
    got = {r.id: r.effective for r in with_crash.requests}
    for r in without.requests:
        assert got[r.id] == pytest.approx(r.effective, rel=1e-6, abs=1e-9)


def test_a_crash_in_numerical_trouble_falls_back_to_interior_point(monkeypatch) -> None:
    """If the crash's own small LPs stop without an optimum (a fault HiGHS cannot be made to
    produce on purpose, so it is raised here), the group is solved from scratch as before:
    same allocation, no error."""
    import fairshare.engine._group as group
    from fairshare.engine._highs import SolverError

    s = gavel_like(2000, 4)
    expected = {r.id: r.effective for r in allocate(s, fractional=True).requests}

    def in_trouble(g: object) -> None:
        raise SolverError("HiGHS stopped with status Time limit reached")

    monkeypatch.setattr(group, "crash_basis", in_trouble)
    for r in allocate(s, fractional=True).requests:
        assert r.effective == pytest.approx(expected[r.id], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    ("per_type", "flat"),
    [(700, 0.0), (250, 1 / 3)],
    ids=["many-jobs-reach-their-demand", "a-third-as-fast-on-every-type"],
)
def test_the_crash_basis_of_a_large_flat_group_holds_where_demands_bind_and_where_pools_tie(
    monkeypatch, per_type: int, flat: float
) -> None:
    """2,000 jobs on 3 pools.  With 2,100 GPUs many jobs reach their demand: they are held at
    their caps, and others need most of their demand at the level (two pools each, the demand
    row at its bound); with a third of the jobs as fast on every type, two pools have the same
    price and those jobs are indifferent between them.  The crash (engine/_crash.py) plans
    both shapes, the group's LP is solved once from its basis, which HiGHS certifies without an
    iteration, and every request gets what interior point gives without it."""
    import fairshare.engine._group as group
    from fairshare.engine._highs import LP

    s = gavel_like(2000, 5, per_type=per_type, flat=flat)
    runs: list[tuple[int, bool, int]] = []
    original = LP._run_from_crash

    def recording(lp: LP) -> bool:
        optimal = original(lp)
        runs.append((lp.n_cols, optimal, lp.h.getInfo().simplex_iteration_count))
        return optimal

    monkeypatch.setattr(LP, "_run_from_crash", recording)
    with_crash = allocate(s, fractional=True)
    assert [(optimal, iterations) for cols, optimal, iterations in runs if cols > 6000] == [(True, 0)]
    monkeypatch.setattr(group, "crash_basis", lambda g: None)
    without = allocate(s, fractional=True)
    got = {r.id: r.effective for r in with_crash.requests}
    for r in without.requests:
        assert got[r.id] == pytest.approx(r.effective, rel=1e-6, abs=1e-9)
