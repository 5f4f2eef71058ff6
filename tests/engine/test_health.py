"""Fairness over time (docs/health.md): fair share by weights alone, share_of_fair, starved streaks,
status, why, debt, and policy.history's boost."""

from __future__ import annotations

import pytest

from fairshare.engine import allocate
from fairshare.engine.health import (
    DifferentLabs,
    HealthRules,
    KeptSolves,
    RoundInput,
    Solved,
    fair_share_scenario,
    health,
    round_key,
    rounds_from,
    with_history,
)
from fairshare.engine.overrides import Pin, allocate_in_order
from fairshare.errors import UserError
from fairshare.scenario import History, Scenario


def guarantee_round(i: int, guarantee: int | None) -> Scenario:
    """Two research teams and a guaranteed team in a sibling branch, plus a team that asks for nothing."""
    g = {"name": "g"} | ({"guarantee": {"H100": guarantee}} if guarantee else {})
    return Scenario.model_validate(
        {
            "name": f"round-{i}",
            "pools": [{"name": "h100", "gpu": "H100", "gpus": 200}],
            "org": {
                "name": "lab",
                "children": [
                    {"name": "research", "children": [{"name": "b1"}, {"name": "b2"}]},
                    {"name": "prod", "children": [g, {"name": "quiet"}]},
                ],
            },
            "requests": [
                {"id": "b1-train", "team": "b1", "gpus": 100},
                {"id": "b2-train", "team": "b2", "gpus": 100},
                {"id": "g-serve", "team": "g", "gpus": 200},
            ],
        }
    )


def four_rounds() -> list[tuple[str, Scenario]]:
    return [(f"r{i}", guarantee_round(i, None if i == 1 else 150)) for i in range(1, 5)]


def test_a_sibling_branchs_guarantee_starves_two_teams_for_three_rounds() -> None:
    h = health(rounds_from(four_rounds()))
    assert h.rounds == ["r1", "r2", "r3", "r4"]
    for team in ("b1", "b2"):
        node = h.node(team)
        assert [r.share_of_fair for r in node.rounds] == [1.0, 0.5, 0.5, 0.5]
        assert (node.status, node.starved_streak) == ("starved", 3)
        assert [w.rule for w in node.rounds[-1].why] == ["guarantee"]
        assert node.rounds[-1].why[0].nodes == ["g"]
        assert node.rounds[-1].why[0].effective == pytest.approx(-25)
    assert (h.node("g").status, h.node("g").starved_streak) == ("ok", 0)
    assert h.node("quiet").status == "no_demand"
    assert [r.share_of_fair for r in h.node("quiet").rounds] == [None] * 4


def test_the_fair_share_ignores_guarantees_limits_priorities_and_minimums() -> None:
    s = guarantee_round(1, 150)
    s = s.model_copy(
        update={
            "requests": [
                s.requests[0].model_copy(update={"priority": "critical", "min": 90}),
                *s.requests[1:],
            ]
        }
    )
    bare = fair_share_scenario(s)
    assert all(not n.guarantee and not n.limit for n in bare.nodes())
    assert all(r.min is None and r.priority == "normal" and r.launch is None for r in bare.requests)
    fair = allocate(bare, fractional=True)
    assert fair.node("research").effective == pytest.approx(100)
    assert fair.node("b1").effective == pytest.approx(50)


def test_debt_halves_every_half_life() -> None:
    h = health(rounds_from(four_rounds()), HealthRules(half_life_rounds=1))
    # owed 25 in each of the last three rounds: 25/4 + 25/2 + 25
    assert h.node("b1").debt == pytest.approx(25 / 4 + 25 / 2 + 25)
    assert h.node("g").debt == pytest.approx(-(50 / 4 + 50 / 2 + 50))


def test_one_round_short_is_short_not_starved() -> None:
    h = health(rounds_from(four_rounds()[:2]))
    assert (h.node("b1").status, h.node("b1").starved_streak) == ("short", 1)


def test_a_team_that_got_its_whole_demand_is_not_starved() -> None:
    s = guarantee_round(2, 150)
    s = s.model_copy(update={"requests": [s.requests[0].model_copy(update={"gpus": 10}), *s.requests[1:]]})
    h = health(rounds_from([("only", s)]))
    assert h.node("b1").rounds[0].received_gpus == 10
    assert not h.node("b1").rounds[0].starved
    assert h.node("b1").status == "ok"


def test_idle_when_used_under_half_of_what_it_received() -> None:
    s = guarantee_round(1, None)
    rnd = RoundInput("r", s, allocate(s), used={"b1": 50 * 24 * 0.2, "b2": 50 * 24}, hours=24)
    h = health([rnd])
    assert h.node("b1").status == "idle"
    assert h.node("b2").status == "ok"
    assert h.node("b1").rounds[0].used == pytest.approx(240)


def test_rounds_of_different_labs_are_refused_naming_the_round() -> None:
    other = guarantee_round(9, None)
    other = other.model_copy(update={"org": other.org.model_copy(update={"name": "elsewhere"})})
    with pytest.raises(DifferentLabs, match="r9.*'elsewhere'"):
        health(rounds_from([*four_rounds()[:1], ("r9", other)]))


@pytest.mark.parametrize("field", ["starved_below", "starved_rounds", "half_life_rounds"])
def test_bad_rules_name_the_field(field: str) -> None:
    with pytest.raises(UserError, match=field):
        HealthRules(**{field: 0})


def priority_round(i: int, history: History | None) -> Scenario:
    """g shares prod with a high-priority request hanging on prod itself: g gets a third, not half."""
    return Scenario.model_validate(
        {
            "name": f"p{i}",
            "pools": [{"name": "h100", "gpu": "H100", "gpus": 200}],
            "org": {"name": "lab", "children": [{"name": "research"}, {"name": "prod", "children": [{"name": "g"}]}]},
            "requests": [
                {"id": "r-train", "team": "research", "gpus": 200},
                {"id": "g-serve", "team": "g", "gpus": 200},
                {"id": "prod-launch", "team": "prod", "gpus": 200, "priority": "high"},
            ],
            "policy": {"history": history.model_dump() if history else None},
        }
    )


def streaks(history: History | None, n: int = 6) -> list[bool]:
    """Run n rounds, each taking its nodes' history from the rounds before it (as the service does)."""
    done: list[RoundInput] = []
    for i in range(n):
        s = priority_round(i, history)
        if done:
            s = with_history(s, health(done))
        done.append(RoundInput(f"p{i}", s, allocate(s, fractional=True)))
    return [r.starved for r in health(done).node("g").rounds]


def test_history_boost_ends_a_starved_streak_sooner() -> None:
    off = streaks(None)
    on = streaks(History())
    assert all(off)  # without the boost, g is starved every round
    assert on[0] and not all(on)
    assert on.index(False) < len(on)


def test_history_off_moves_nobodys_weight() -> None:
    s = priority_round(0, None)
    past = health(rounds_from([("p-1", s)]))
    boosted = with_history(s, past)
    assert boosted.org.children[1].children[0].history is not None  # g is owed ...
    plain, again = allocate(s), allocate(boosted)
    assert [n.weight for n in again.nodes] == [n.weight for n in plain.nodes]  # ... but nothing moves
    assert [r.gpus for r in again.requests] == [r.gpus for r in plain.requests]


def test_history_boost_is_bounded_and_named_in_why() -> None:
    s = priority_round(0, History(boost_per_debt=100, max_boost=1.5))
    boosted = with_history(s, health(rounds_from([("p-1", priority_round(0, None))])))
    alloc = allocate(boosted)
    assert alloc.node("g").weight == pytest.approx(1.5)
    why = health([RoundInput("p0", boosted, alloc)]).node("g").rounds[0].why
    boost = [w for w in why if w.rule == "history" and w.effective > 0]
    assert boost and boost[0].text.endswith("weight x1.50: received 66% of its fair share in the last round")


# --- each rule in `why`, checked by taking the named cause away -------------------------------------------------


def small_lab(
    t1: dict | None = None,
    t2: dict | None = None,
    research: dict | None = None,
    extra: list[dict] | None = None,
    **req: dict,
) -> Scenario:
    """100 H100: research (t1, t2) and prod (p), each team asking for 100; keyword arguments add fields to
    a team's node (t1, t2, research) or to a request (t1_run, t2_run, p_run); `extra` adds requests."""
    return Scenario.model_validate(
        {
            "name": "small",
            "pools": [{"name": "h100", "gpu": "H100", "gpus": 100}],
            "org": {
                "name": "lab",
                "children": [
                    {
                        "name": "research",
                        **(research or {}),
                        "children": [{"name": "t1", **(t1 or {})}, {"name": "t2", **(t2 or {})}],
                    },
                    {"name": "prod", "children": [{"name": "p"}]},
                ],
            },
            "requests": [
                {"id": "t1-run", "team": "t1", "gpus": 100, **req.get("t1_run", {})},
                {"id": "t2-run", "team": "t2", "gpus": 100, **req.get("t2_run", {})},
                {"id": "p-run", "team": "p", "gpus": 100, **req.get("p_run", {})},
                *(extra or []),
            ],
            "policy": {"date": "2026-11-01"},
        }
    )


def why_of(s: Scenario, node: str, pins: list[Pin] | None = None) -> tuple[float, list]:
    alloc = allocate_in_order(s, pins) if pins else allocate(s)
    row = health([RoundInput("r", s, alloc, pins=pins or ())]).node(node).rounds[0]
    return row.received, row.why


def t1_effective(s: Scenario) -> float:
    return allocate(s).node("t1").effective


@pytest.mark.parametrize(
    ("where", "capped_by"),
    [({"t1": {"limit": {"H100": 20}}}, "t1"), ({"research": {"limit": {"H100": 30}}}, "research")],
)
def test_why_names_its_own_or_an_ancestors_limit(where: dict, capped_by: str) -> None:
    s = small_lab(**where)
    received, why = why_of(s, "t1")
    assert (why[0].rule, why[0].nodes) == ("limit", [capped_by]) and why[0].effective < 0
    assert f"capped by the limit of {capped_by}" in why[0].text
    assert received + abs(why[0].effective) == pytest.approx(t1_effective(small_lab()))  # no limit: its fair 25


@pytest.mark.parametrize(
    "boost", [{"priority": "critical"}, {"launch": "2026-11-08"}], ids=["its priority", "its urgency"]
)
def test_why_names_the_request_raised_by_priority_or_urgency(boost: dict) -> None:
    """A request hanging on research itself competes with research's teams by its weight: raised by its
    priority or its launch date, it takes from t1 and t2."""
    on_research = {"id": "r-eval", "team": "research", "gpus": 100}
    plain = small_lab(extra=[on_research])
    s = small_lab(extra=[on_research | boost])
    received, why = why_of(s, "t1")
    assert (why[0].rule, why[0].nodes) == ("priority", ["r-eval"]) and why[0].effective < 0
    assert "priorities and urgency of r-eval" in why[0].text
    # without it, t1 gets back what the why says it lost (to a whole GPU: `rounding` is its own entry)
    assert t1_effective(plain) == pytest.approx(received + abs(why[0].effective), abs=1)
    assert t1_effective(plain) > received


def test_why_names_its_own_request_dropped_below_its_minimum() -> None:
    s = small_lab(t1_run={"min": 40})
    received, why = why_of(s, "t1")
    assert received == 0
    assert (why[0].rule, why[0].nodes, why[0].effective) == ("below_min", ["t1-run"], -25)
    assert "its requests t1-run not funded below their minimum" in why[0].text


def test_why_names_the_override_and_its_reason() -> None:
    s = small_lab()
    pin = Pin("t2-run", {"h100": 40}, "override 3: t2's deadline")
    received, why = why_of(s, "t1", [pin])
    assert received == 10  # research's 50, less t2's 40: its own branch pays
    assert (why[0].rule, why[0].nodes, why[0].effective) == ("override", ["t2-run"], -15)
    assert "on others' requests: t2-run (override 3: t2's deadline)" in why[0].text
    assert t1_effective(s) == 25  # without the pin
    _, own = why_of(s, "t2", [pin])
    assert own[0].rule == "override" and "on its requests: t2-run" in own[0].text and own[0].effective == 15


# --- the solved steps kept between calls (the service reads the same past rounds again and again) ---------------


def test_kept_rounds_are_not_solved_again_and_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import fairshare.engine.health as engine_health

    rounds = [
        RoundInput(r.name, r.scenario, r.allocation, key=round_key(r.scenario, r.allocation))
        for r in rounds_from(four_rounds())
    ]
    kept = KeptSolves()
    first = health(rounds, kept=kept)
    assert len(kept) == 4
    solves = []
    monkeypatch.setattr(engine_health, "allocate", lambda *a, **k: solves.append(a) or allocate(*a, **k))
    assert health(rounds, kept=kept).to_dict() == first.to_dict() == health(rounds).to_dict()
    assert len(solves) > 0  # without `kept`, every round is solved again ...
    solves.clear()
    health(rounds, kept=kept)
    assert solves == []  # ... with it, none


def test_a_round_whose_allocation_or_pins_changed_has_another_key() -> None:
    s = small_lab()
    plain = allocate(s)
    pin = Pin("t2-run", {"h100": 40}, "t2's deadline")
    pinned = allocate_in_order(s, [pin])
    assert round_key(s, plain) == round_key(small_lab(), allocate(small_lab()))
    assert len({round_key(s, plain), round_key(s, pinned, [pin]), round_key(small_lab(t1={"weight": 2}), plain)}) == 3


def test_kept_solves_drop_the_least_recently_used() -> None:
    kept = KeptSolves(size=2)
    a, b, c = (Solved({}, [("fair", {n: float(i)})]) for i, n in enumerate("abc"))
    kept["a"], kept["b"] = a, b
    assert kept.get("a") is a  # a used: b is now the oldest
    kept["c"] = c
    assert set(kept) == {"a", "c"} and kept.get("b") is None
