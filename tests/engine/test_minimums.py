"""Minimum viable sizes decided in few rounds (issue 16): which requests a round drops, and that
the answer is the one-at-a-time rule's on labs where the two can be told apart."""

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


def one_at_a_time(short, got, minimum, ids, *_):
    """The old rule: the request furthest below its minimum, alone."""
    return [min(short.tolist(), key=lambda r: (got[r] / minimum[r], ids[r]))]


def allocate_one_at_a_time(s: Scenario, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(engine, "drops_of_round", one_at_a_time)
        return allocate(s)


def test_hopeless_minimums_in_different_teams_are_dropped_in_one_round(monkeypatch) -> None:
    s = hopeless_minimums()
    a = allocate(s)
    assert sorted(a.fairness.below_min) == [f"big{i}" for i in range(5)]
    assert a.stats.min_rounds == 2  # one round of drops, then the solve that funds everyone left
    old = allocate_one_at_a_time(s, monkeypatch)
    assert old.stats.min_rounds == 6
    assert [r.gpus for r in a.requests] == [r.gpus for r in old.requests]


def test_a_drop_that_lifts_a_sibling_to_its_minimum_is_waited_for(monkeypatch) -> None:
    # dropping all four at once would fund none: the rule must come to the one that fits
    s = siblings_all_or_nothing()
    a = allocate(s)
    funded = [r for r in a.requests if r.id.startswith("run") and r.total > 0]
    assert len(funded) == 1 and funded[0].total == 64
    assert len(a.fairness.below_min) == 3
    old = allocate_one_at_a_time(s, monkeypatch)
    assert sorted(a.fairness.below_min) == sorted(old.fairness.below_min)
    assert a.stats.min_rounds < old.stats.min_rounds


def test_lp_solves_count_every_minimum_size_round() -> None:
    s = hopeless_minimums()
    with_drops = allocate(s)
    funded_only = allocate(s.model_copy(update={"requests": [r for r in s.requests if not r.min]}))
    assert with_drops.stats.min_rounds == 2
    assert with_drops.stats.lp_solves > funded_only.stats.lp_solves


def test_the_furthest_below_is_always_dropped_and_alone_when_others_could_be_lifted() -> None:
    minimum = np.array([40.0, 40.0, 40.0])
    ids = ["a", "b", "c"]
    # request 2 is furthest below; 0 and 1 could each reach 40 with the 20 GPUs it frees
    got = np.array([30.0, 35.0, 20.0])
    assert engine.drops_of_round(np.array([0, 1, 2]), got, minimum, ids) == [2]
    # 0 lacks 30 and 2 frees 5: 0 goes too; 1 lacks 10 and 0 and 2 free 15: it waits
    got = np.array([10.0, 30.0, 5.0])
    assert engine.drops_of_round(np.array([0, 1, 2]), got, minimum, ids) == [2, 0]
    # every GPU freed counts, wherever it is: 1 lacks 25 and the others free 26 together, so it waits
    got = np.array([13.0, 15.0, 13.0])
    assert engine.drops_of_round(np.array([0, 1, 2]), got, minimum, ids) == [0, 2]


def test_many_rounds_give_the_one_at_a_time_answer_on_random_labs(monkeypatch) -> None:
    """The rule drops together only requests no drop of the round can lift: same funded set."""
    from fairshare.scenario.synthetic import synthetic_scenario

    for seed in range(3):
        s = synthetic_scenario(150, seed=seed, minimums=0.3)
        a, old = allocate(s), allocate_one_at_a_time(s, monkeypatch)
        assert sorted(a.fairness.below_min) == sorted(old.fairness.below_min), seed
        assert a.stats.min_rounds <= old.stats.min_rounds
