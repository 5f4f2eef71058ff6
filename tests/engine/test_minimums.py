"""Minimum viable sizes: the furthest below is dropped first, one at a time, and every round's LPs
are counted (issue 16)."""

from __future__ import annotations

import numpy as np

import fairshare.engine._allocate as engine
from fairshare.engine import allocate
from fairshare.scenario import OrgNode, Pool, Request, Scenario


def hopeless_minimums(teams: int = 5) -> Scenario:
    """Each team's share is 8 GPUs; its all-or-nothing request wants 40, its other request 40."""
    return Scenario(
        name="s",
        pools=[Pool(name="p", gpu="A", gpus=8 * teams)],
        org=OrgNode(name="root", children=[OrgNode(name=f"t{i}") for i in range(teams)]),
        requests=[Request(id=f"big{i}", team=f"t{i}", gpus=40, min=40) for i in range(teams)]
        + [Request(id=f"small{i}", team=f"t{i}", gpus=40) for i in range(teams)],
    )


def siblings_all_or_nothing() -> Scenario:
    """Team t's share is 100 GPUs and four of its requests need 64 each: one of them fits."""
    return Scenario(
        name="s",
        pools=[Pool(name="p", gpu="A", gpus=200)],
        org=OrgNode(name="root", children=[OrgNode(name="t"), OrgNode(name="u")]),
        requests=[Request(id=f"run{i}", team="t", gpus=64, min=64) for i in range(4)]
        + [Request(id="other", team="u", gpus=100)],
    )


def test_hopeless_minimums_are_all_dropped_and_their_gpus_shared_out() -> None:
    a = allocate(hopeless_minimums())
    assert sorted(a.fairness.below_min) == [f"big{i}" for i in range(5)]
    assert a.stats.min_rounds == 6  # one drop per round, then the solve that funds everyone left
    assert all(a.request(f"small{i}").total == 8 for i in range(5))


def test_a_drop_that_lifts_a_sibling_to_its_minimum_funds_it() -> None:
    # dropping all four at once would fund none: one at a time comes to the one that fits
    a = allocate(siblings_all_or_nothing())
    funded = [r for r in a.requests if r.id.startswith("run") and r.total > 0]
    assert len(funded) == 1 and funded[0].total == 64
    assert len(a.fairness.below_min) == 3


def test_lp_solves_count_every_minimum_size_round() -> None:
    s = hopeless_minimums()
    with_drops = allocate(s)
    funded_only = allocate(s.model_copy(update={"requests": [r for r in s.requests if not r.min]}))
    assert with_drops.stats.lp_solves > funded_only.stats.lp_solves


def test_the_furthest_below_its_minimum_is_dropped_ties_by_id() -> None:
    minimum = np.array([40.0, 40.0, 20.0])
    got = np.array([30.0, 10.0, 4.0])
    assert engine.drops_of_round(np.array([0, 1, 2]), got, minimum, ["a", "b", "c"]) == [2]
    got = np.array([10.0, 10.0, 15.0])
    assert engine.drops_of_round(np.array([0, 1, 2]), got, minimum, ["b", "a", "c"]) == [1]
