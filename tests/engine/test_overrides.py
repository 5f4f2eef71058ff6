"""Committee overrides (fairshare.engine.overrides): pin a request at some GPUs, re-solve everyone else.

`place` spreads a total over a request's pools (keep what it has, trim the slowest pools first,
grow on the fastest first, within what other pins leave); `allocate_with_pins` holds pinned
requests at their GPUs and shares the rest by the usual rules, with every pin counted against
its ancestors' limits and guarantees.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import scenarios

from conftest import idle_usable, subtree_names, usable
from fairshare.engine import allocate
from fairshare.engine.overrides import OverrideError, Pin, absorb, allocate_in_order, allocate_with_pins, place
from fairshare.scenario import Scenario
from fairshare.scenario.files import loads_scenario

# --- place: spreading a total over a request's pools ----------------------------------------------

POOLS = loads_scenario("""
name: pools
pools:
  - {name: h100,   gpu: H100, site: a, gpus: 16}
  - {name: a100,   gpu: A100, site: a, gpus: 64}
  - {name: a100-b, gpu: A100, site: b, gpus: 32}
  - {name: v100,   gpu: V100, site: b, gpus: 64}
org: {name: lab}
requests:
  - {id: multi, team: lab, gpus: 500, speed: {H100: 3, A100: 1, V100: 0.5}}
  - {id: site-a, team: lab, gpus: 500, sites: [a]}
  - {id: stuck, team: lab, gpus: 8, speed: {H100: 1}, sites: [b]}
""")


@pytest.mark.parametrize(
    ("total", "current", "taken", "expected"),
    [
        (15, {"a100": 10, "v100": 5}, {}, {"a100": 10, "v100": 5}),  # same total: keeps what it has
        (50, {}, {}, {"h100": 16, "a100": 34}),  # grows on the fastest pool first
        (100, {}, {}, {"h100": 16, "a100": 64, "a100-b": 20}),  # equal speeds: file order
        (25, {"v100": 5}, {}, {"v100": 5, "h100": 16, "a100": 4}),  # grows without moving what it has
        (20, {"h100": 16, "a100": 10, "v100": 10}, {}, {"h100": 16, "a100": 4}),  # trims the slowest first
        (20, {}, {"h100": 10}, {"h100": 6, "a100": 14}),  # other pins' GPUs are not free
        (16, {"h100": 16}, {"h100": 10}, {"h100": 6, "a100": 10}),  # what it held but another pin took moves
        (0, {"h100": 4, "a100": 3}, {}, {}),
    ],
    ids=["keep", "grow-fastest", "grow-tie", "grow-keeps", "trim-slowest", "taken", "taken-current", "zero"],
)
def test_place_spreads_the_total_over_the_request_pools(
    total: int, current: dict[str, int], taken: dict[str, int], expected: dict[str, int]
) -> None:
    assert place(POOLS, "multi", total, current, taken) == expected


def test_place_ignores_current_gpus_on_pools_the_request_cannot_use() -> None:
    assert place(POOLS, "site-a", 5, {"v100": 10}) == {"h100": 5}


def test_place_refuses_more_than_the_request_pools_hold_naming_them() -> None:
    with pytest.raises(OverrideError, match="at most 176") as e:
        place(POOLS, "multi", 177, {})
    assert all(p in str(e.value) for p in ("h100", "a100", "a100-b", "v100"))
    with pytest.raises(OverrideError, match="at most 80"):
        place(POOLS, "site-a", 81, {})
    with pytest.raises(OverrideError, match="at most 112"):
        place(POOLS, "multi", 113, {}, {"a100": 64})


def test_place_refuses_gpus_to_a_request_that_can_use_no_pool_but_may_pin_it_at_zero() -> None:
    with pytest.raises(OverrideError, match="'stuck' can use no pool"):
        place(POOLS, "stuck", 1, {})
    assert place(POOLS, "stuck", 0, {"h100": 3}) == {}


def test_place_refuses_an_unknown_request_and_a_negative_total() -> None:
    with pytest.raises(OverrideError, match="unknown request 'nope'"):
        place(POOLS, "nope", 1, {})
    with pytest.raises(OverrideError, match="-3"):
        place(POOLS, "multi", -3, {"a100": 5})


@st.composite
def placements(draw) -> tuple[str, int, dict[str, int], dict[str, int]]:
    req = draw(st.sampled_from(["multi", "site-a"]))
    current = {p.name: draw(st.integers(0, p.gpus)) for p in POOLS.pools if draw(st.booleans())}
    taken = {p.name: draw(st.integers(0, p.gpus)) for p in POOLS.pools if draw(st.booleans())}
    mine = POOLS.requests[0 if req == "multi" else 1]
    room = sum(p.gpus - taken.get(p.name, 0) for p in POOLS.pools if usable(mine, p))
    return req, draw(st.integers(0, room)), current, taken


@settings(max_examples=100, deadline=None)
@given(placements())
def test_place_gives_exactly_the_total_within_free_capacity_moving_as_little_as_possible(
    case: tuple[str, int, dict[str, int], dict[str, int]],
) -> None:
    req_id, total, current, taken = case
    req = next(r for r in POOLS.requests if r.id == req_id)
    out = place(POOLS, req_id, total, current, taken)
    assert sum(out.values()) == total
    pools = {p.name: p for p in POOLS.pools}
    kept = {}
    for p in POOLS.pools:
        n = out.get(p.name, 0)
        assert 0 <= n <= p.gpus - taken.get(p.name, 0), p.name
        assert n == 0 or usable(req, pools[p.name])
        kept[p.name] = min(current.get(p.name, 0), p.gpus - taken.get(p.name, 0)) if usable(req, p) else 0
    # growing never takes GPUs away from a pool, shrinking never adds to one
    if total >= sum(kept.values()):
        assert all(out.get(k, 0) >= v for k, v in kept.items())
    else:
        assert all(out.get(k, 0) <= v for k, v in kept.items())


# --- allocate_with_pins: everyone else re-solved around the pins -----------------------------------

# 108 GPUs, 400 asked for.  fair is capped at 50 A100; every request but `assistant` runs on A100 only.
LAB = loads_scenario("""
name: lab
pools:
  - {name: a100, gpu: A100, gpus: 100}
  - {name: h100, gpu: H100, gpus: 8}
org:
  name: lab
  children:
    - name: fair
      limit: {A100: 50}
      children: [{name: llama}, {name: opt}]
    - name: genai
      children: [{name: assistants}]
requests:
  - {id: llama-70b, team: llama, gpus: 100, speed: {A100: 1}}
  - {id: opt-175b, team: opt, gpus: 100, speed: {A100: 1}}
  - {id: assistant, team: assistants, gpus: 100}
  - {id: chat, team: assistants, gpus: 100, speed: {A100: 1}}
""")

# small (weight 1 of 10) is guaranteed 40 A100; its fair share alone would be 10.
GUARANTEED = loads_scenario("""
name: guaranteed
pools: [{name: a100, gpu: A100, gpus: 100}]
org:
  name: lab
  children:
    - {name: big, weight: 9}
    - {name: small, guarantee: {A100: 40}}
requests:
  - {id: big-run, team: big, gpus: 1000}
  - {id: small-pinned, team: small, gpus: 100}
  - {id: small-other, team: small, gpus: 100}
""")


def pool_use(alloc) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in alloc.requests:
        for p, n in r.gpus.items():
            out[p] = out.get(p, 0.0) + n
    return out


def test_no_pins_is_the_engines_allocation() -> None:
    assert [r.gpus for r in allocate_with_pins(LAB, []).requests] == [r.gpus for r in allocate(LAB).requests]


def test_a_pinned_request_gets_exactly_its_pins_with_reason_override() -> None:
    a = allocate_with_pins(LAB, [Pin("assistant", {"h100": 8, "a100": 2}, "product launch")])
    r = a.request("assistant")
    assert r.gpus == {"h100": 8, "a100": 2}
    assert r.total == 10 and r.effective == pytest.approx(10)
    assert r.reason.code == "override"
    assert "10 GPUs" in r.reason.text and "product launch" in r.reason.text
    assert all(o.reason.code != "override" for o in a.requests if o.id != "assistant")


def test_pins_never_push_a_pool_over_capacity_and_the_pool_totals_count_them() -> None:
    a = allocate_with_pins(LAB, [Pin("opt-175b", {"a100": 45}, "paper"), Pin("assistant", {"a100": 40}, "launch")])
    use = pool_use(a)
    for p in a.pools:
        assert p.allocated == pytest.approx(use.get(p.name, 0.0))
        assert p.allocated <= p.capacity
    assert use["a100"] == 100  # 85 pinned, the last 15 shared out
    assert a.request("llama-70b").total == 5  # fair's limit of 50, less opt's 45


@pytest.mark.parametrize(
    "pins",
    [
        [Pin("opt-175b", {"a100": 30}, "paper")],
        [Pin("assistant", {"h100": 8}, "launch"), Pin("llama-70b", {"a100": 10}, "ablations")],
        [Pin("chat", {}, "paused")],
    ],
    ids=["one", "two", "zero"],
)
def test_pins_do_not_change_how_many_gpus_are_given_out_when_demand_exceeds_capacity(pins: list[Pin]) -> None:
    capacity = sum(p.gpus for p in LAB.pools)
    assert sum(p.allocated for p in allocate(LAB).pools) == capacity
    assert sum(p.allocated for p in allocate_with_pins(LAB, pins).pools) == capacity


def test_a_pin_counts_against_its_ancestors_limit() -> None:
    """fair may have 50 A100; opt pinned at 30 leaves at most 20 for llama (which wants 100)."""
    a = allocate_with_pins(LAB, [Pin("opt-175b", {"a100": 30}, "paper")])
    assert a.request("opt-175b").gpus == {"a100": 30}
    assert a.request("llama-70b").total == 20
    assert a.request("llama-70b").reason.code == "limit" and a.request("llama-70b").reason.node == "fair"
    assert a.node("fair").gpus["A100"] == 50
    assert a.request("chat").total + a.request("assistant").gpus.get("a100", 0) == 50  # the rest goes to genai


def test_a_pin_above_the_limit_leaves_nothing_of_that_type_to_the_rest_of_the_subtree() -> None:
    a = allocate_with_pins(LAB, [Pin("opt-175b", {"a100": 60}, "committee decision")])
    assert a.request("opt-175b").total == 60
    assert a.request("llama-70b").total == 0


def test_a_pin_counts_against_its_ancestors_guarantee() -> None:
    """small is guaranteed 40 A100; small-pinned holds 30 of them, so small-other is held up to 10 only."""
    plain = allocate(GUARANTEED)
    assert plain.node("small").gpus["A100"] == 40
    a = allocate_with_pins(GUARANTEED, [Pin("small-pinned", {"a100": 30}, "deadline")])
    assert a.request("small-other").total == 10
    assert a.node("small").gpus["A100"] == 40
    assert a.request("big-run").total == 60


def test_node_results_include_the_pinned_requests() -> None:
    a = allocate_with_pins(LAB, [Pin("opt-175b", {"a100": 30}, "paper")])
    assert a.node("opt").gpus == {"A100": 30}
    assert a.node("opt").demand == 100 and a.node("opt").effective == pytest.approx(30)
    assert a.node("lab").demand == 400
    assert a.node("lab").gpus == {"A100": 100, "H100": 8}
    assert a.node("fair").effective == pytest.approx(50)


def test_every_request_pinned_is_just_the_pins() -> None:
    pins = [
        Pin("llama-70b", {"a100": 10}, "x"),
        Pin("opt-175b", {"a100": 20}, "x"),
        Pin("assistant", {"h100": 8}, "x"),
        Pin("chat", {"a100": 30}, "x"),
    ]
    a = allocate_with_pins(LAB, pins)
    assert {r.id: r.gpus for r in a.requests} == {p.request: p.gpus for p in pins}
    assert {p.name: p.allocated for p in a.pools} == {"a100": 60, "h100": 8}


def test_pinning_a_request_at_what_it_gets_anyway_keeps_the_fairness_metrics() -> None:
    plain = allocate(LAB)
    llama = plain.request("llama-70b")
    a = allocate_with_pins(LAB, [Pin("llama-70b", {k: int(v) for k, v in llama.gpus.items()}, "confirmed")])
    assert [r.gpus for r in a.requests] == [r.gpus for r in plain.requests]
    assert a.fairness.jain_index == pytest.approx(plain.fairness.jain_index)
    assert a.fairness.least_satisfied_team == plain.fairness.least_satisfied_team


def test_a_team_pinned_at_nothing_is_the_least_satisfied() -> None:
    a = allocate_with_pins(LAB, [Pin("opt-175b", {}, "paused by the committee")])
    assert a.request("opt-175b").total == 0
    assert a.fairness.least_satisfied_team == "opt"
    assert a.fairness.least_satisfied_share == 0


# --- refused pins -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        ([Pin("opt-175b", {"b200": 4}, "r")], "unknown pool 'b200'"),
        ([Pin("opt-175b", {"h100": 4}, "r")], "cannot run in pool 'h100'"),
        ([Pin("assistant", {"h100": 9}, "r")], "9 GPUs in pool 'h100', which has 8"),
        (
            [Pin("assistant", {"h100": 5}, "r"), Pin("chat", {"a100": 1}, "r"), Pin("llama-70b", {"h100": 0}, "r")],
            "cannot run in pool 'h100'",
        ),
        (
            [Pin("assistant", {"a100": 60}, "r"), Pin("chat", {"a100": 41}, "r")],
            "101 GPUs in pool 'a100', which has 100",
        ),
        ([Pin("ghost", {"a100": 1}, "r")], "unknown request 'ghost'"),
        ([Pin("chat", {"a100": -5}, "r")], "pool 'a100'"),
        ([Pin("chat", {"a100": 5}, "r"), Pin("chat", {"a100": 6}, "r")], "'chat' is pinned twice"),
    ],
    ids=[
        "unknown-pool",
        "unusable-type",
        "over-capacity",
        "unusable-among-several",
        "over-capacity-together",
        "unknown-request",
        "negative",
        "twice",
    ],
)
def test_a_pin_that_cannot_be_honoured_is_refused_naming_what_is_wrong(pins: list[Pin], message: str) -> None:
    with pytest.raises(OverrideError, match=message.replace("(", r"\(")):
        allocate_with_pins(LAB, pins)


def test_a_pin_outside_the_request_sites_is_refused() -> None:
    with pytest.raises(OverrideError, match="cannot run in pool 'v100'"):
        allocate_with_pins(POOLS, [Pin("site-a", {"v100": 1}, "r")])


# --- property: any feasible pin keeps every constraint ---------------------------------------------

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _used_type(s: Scenario, alloc, node_names: set[str], gpu: str, only: set[str] | None = None) -> float:
    gpu_of = {p.name: p.gpu for p in s.pools}
    return sum(
        n
        for r in alloc.requests
        if r.team in node_names and (only is None or r.id in only)
        for p, n in r.gpus.items()
        if gpu_of[p] == gpu
    )


@SETTINGS
@given(scenarios(limits=True), st.data())
def test_random_pin_at_any_feasible_total_keeps_capacity_demand_and_limits(s: Scenario, data: st.DataObject) -> None:
    req = data.draw(st.sampled_from(s.requests))
    room = sum(p.gpus for p in s.pools if usable(req, p))
    total = data.draw(st.integers(0, min(req.gpus, room)))
    before = allocate(s)
    gpus = place(s, req.id, total, {k: int(v) for k, v in before.request(req.id).gpus.items()})
    a = allocate_with_pins(s, [Pin(req.id, gpus, "property")])

    pinned = a.request(req.id)
    assert pinned.gpus == gpus and pinned.total == total and pinned.reason.code == "override"
    reqs = {r.id: r for r in s.requests}
    pools = {p.name: p for p in s.pools}
    for r in a.requests:
        assert r.total <= reqs[r.id].gpus
        assert all(n >= 0 and (n == 0 or usable(reqs[r.id], pools[p])) for p, n in r.gpus.items())
    use = pool_use(a)
    for p in a.pools:
        assert p.allocated == pytest.approx(use.get(p.name, 0.0))
        assert use.get(p.name, 0.0) <= p.capacity
    # a limit binds the rest of the subtree; only the committee's pin may go past it
    for node in s.org.walk():
        names = subtree_names(node)
        for gpu, cap in node.limit.items():
            used = _used_type(s, a, names, gpu)
            mine = _used_type(s, a, names, gpu, only={req.id})
            assert used <= max(cap, mine) + 1e-9, (node.name, gpu)
    # everyone else is re-solved around the pin: no idle GPU that an unpinned request could use
    assert [pair for pair in idle_usable(s, a, min_idle=1.0, min_hunger=1.0) if pair[0] != req.id] == []


# --- absorb: a change is paid by the request's own branch first -------------------------------------

# one pool of 100; root -> g1 (t1a, t1b), g2 (t2); each asks 100; the engine gives 25 / 25 / 50.
BRANCHES = loads_scenario("""
name: branches
pools: [{name: p, gpu: A100, gpus: 100}]
org:
  name: root
  children:
    - {name: g1, children: [{name: t1a}, {name: t1b}]}
    - {name: g2, children: [{name: t2}]}
requests:
  - {id: t1a-run, team: t1a, gpus: 100}
  - {id: t1a-eval, team: t1a, gpus: 100}
  - {id: t1b-run, team: t1b, gpus: 100}
  - {id: t2-run, team: t2, gpus: 100}
""")
SMALLEST = BRANCHES.model_copy(update={"requests": [r for r in BRANCHES.requests if r.id != "t1a-eval"]})


def totals(alloc) -> dict[str, float]:
    return {r.id: r.total for r in alloc.requests}


def test_the_smallest_case_pins_t1a_at_40_and_only_its_sibling_team_pays() -> None:
    base = allocate(SMALLEST)
    assert totals(base) == {"t1a-run": 25, "t1b-run": 25, "t2-run": 50}
    got = absorb(SMALLEST, base, [Pin("t1a-run", {"p": 40}, "launch")], "t1a-run")
    assert totals(got.allocation) == {"t1a-run": 40, "t1b-run": 10, "t2-run": 50}
    assert got.scope == "g1"
    # the plain re-solve is what the rule replaces: g2 paid for it
    assert totals(allocate_with_pins(SMALLEST, [Pin("t1a-run", {"p": 40}, "launch")]))["t2-run"] < 50


def test_gpus_a_pin_frees_go_to_its_sibling_team_first() -> None:
    got = absorb(SMALLEST, allocate(SMALLEST), [Pin("t1a-run", {"p": 10}, "paused")], "t1a-run")
    assert totals(got.allocation) == {"t1a-run": 10, "t1b-run": 40, "t2-run": 50}
    assert got.scope == "g1"


def test_a_change_inside_a_team_is_paid_by_the_team_alone() -> None:
    base = allocate(BRANCHES)
    got = absorb(BRANCHES, base, [Pin("t1a-run", {"p": 20}, "deadline")], "t1a-run")
    assert got.scope == "t1a"
    after = totals(got.allocation)
    assert after["t1a-run"] == 20 and after["t1a-run"] + after["t1a-eval"] == 25  # t1a keeps its 25
    assert (after["t1b-run"], after["t2-run"]) == (25, 50)


def test_gpus_the_branch_cannot_use_go_up_only_as_far_as_needed() -> None:
    """t1b wants only 25: what t1a frees goes past g1 to g2."""
    lab = SMALLEST.model_copy(
        update={"requests": [r.model_copy(update={"gpus": 25}) if r.id == "t1b-run" else r for r in SMALLEST.requests]}
    )
    got = absorb(lab, allocate(lab), [Pin("t1a-run", {"p": 10}, "paused")], "t1a-run")
    assert got.scope == "root"
    assert totals(got.allocation) == {"t1a-run": 10, "t1b-run": 25, "t2-run": 65}


def test_a_pin_bigger_than_the_branch_holds_is_absorbed_higher_up() -> None:
    got = absorb(SMALLEST, allocate(SMALLEST), [Pin("t1a-run", {"p": 90}, "launch")], "t1a-run")
    assert got.scope == "root"
    assert totals(got.allocation)["t1a-run"] == 90 and sum(totals(got.allocation).values()) == 100


def test_requests_held_outside_the_branch_keep_their_own_reasons() -> None:
    base = allocate(SMALLEST)
    got = absorb(SMALLEST, base, [Pin("t1a-run", {"p": 40}, "launch")], "t1a-run").allocation
    assert got.request("t2-run").reason == base.request("t2-run").reason
    assert got.request("t1a-run").reason.code == "override"


def test_overrides_replayed_in_order_keep_each_absorption_and_removing_one_undoes_it() -> None:
    pins = [Pin("t1a-run", {"p": 40}, "launch"), Pin("t2-run", {"p": 45}, "budget")]
    step1 = absorb(SMALLEST, allocate(SMALLEST), pins[:1], "t1a-run").allocation
    step2 = absorb(SMALLEST, step1, pins, "t2-run").allocation
    assert totals(allocate_in_order(SMALLEST, pins)) == totals(step2)
    assert totals(allocate_in_order(SMALLEST, [])) == totals(allocate(SMALLEST))
    # t1a's pin removed: g1 shares its GPUs (and the 5 t2 freed) evenly again
    left = totals(allocate_in_order(SMALLEST, pins[1:]))
    assert left["t1a-run"] + left["t1b-run"] == 55 and abs(left["t1a-run"] - left["t1b-run"]) <= 1


@SETTINGS
@given(scenarios(limits=True), st.data())
def test_random_pin_moves_no_request_outside_the_subtree_that_absorbs_it(s: Scenario, data: st.DataObject) -> None:
    req = data.draw(st.sampled_from(s.requests))
    room = sum(p.gpus for p in s.pools if usable(req, p))
    total = data.draw(st.integers(0, min(req.gpus, room)))
    base = allocate(s)
    gpus = place(s, req.id, total, {k: int(v) for k, v in base.request(req.id).gpus.items()})
    got = absorb(s, base, [Pin(req.id, gpus, "property")], req.id)
    assert got.allocation.request(req.id).gpus == gpus
    assert got.scope is not None
    scope = next(n for n in s.org.walk() if n.name == got.scope)
    if scope is not s.org:
        inside = subtree_names(scope)
        assert req.team in inside
        for r in base.requests:
            if r.team not in inside:
                assert got.allocation.request(r.id).gpus == {p: n for p, n in r.gpus.items() if n > 0}, r.id
    use = pool_use(got.allocation)
    assert all(use.get(p.name, 0) <= p.gpus for p in s.pools)


def test_a_pin_absorbed_at_the_root_is_paid_and_nobody_gains() -> None:
    """t1a +65: g1 cannot hold it, so the whole lab pays, and no other request gets more than before."""
    base = allocate(SMALLEST)
    got = absorb(SMALLEST, base, [Pin("t1a-run", {"p": 90}, "launch")], "t1a-run")
    after, before = totals(got.allocation), totals(base)
    assert got.scope == "root" and after["t1a-run"] == 90
    assert after["t1b-run"] <= before["t1b-run"] and after["t2-run"] <= before["t2-run"]
    assert sum(after.values()) == 100
    paid = got.allocation.request("t2-run").reason
    assert "t1a-run" in paid.text and "gave up" in paid.text  # says what the change did, not a cap it never had


def test_a_grant_grows_on_the_pools_its_own_branch_holds() -> None:
    """The fastest pool is held by another org: the grant is placed where its own org holds GPUs, so that
    org pays (a grant on the fast pool would be paid by the other org)."""
    lab = loads_scenario("""
name: two-orgs
pools: [{name: fast, gpu: H100, gpus: 10}, {name: slow, gpu: A100, gpus: 20}]
org:
  name: root
  children:
    - {name: a, children: [{name: a1}, {name: a2}]}
    - {name: b, children: [{name: b1}]}
requests:
  - {id: a1-run, team: a1, gpus: 40, speed: {H100: 2, A100: 1}}
  - {id: a2-run, team: a2, gpus: 40, speed: {A100: 1}}
  - {id: b1-run, team: b1, gpus: 40, speed: {H100: 3, A100: 1}}
""")
    base = allocate(lab)
    have = {k: int(v) for k, v in base.request("a1-run").gpus.items()}
    total = int(base.request("a1-run").total) + 3
    placed = place(lab, "a1-run", total, have, base=base)
    assert placed.get("fast", 0) <= have.get("fast", 0)  # grown on the slow pool its org holds
    got = absorb(lab, base, [Pin("a1-run", placed, "grant")], "a1-run")
    assert got.scope == "a"
    assert got.allocation.request("b1-run").gpus == {p: n for p, n in base.request("b1-run").gpus.items() if n}
    # the fastest-first placement would have taken b's GPUs
    fastest = place(lab, "a1-run", total, have)
    assert fastest.get("fast", 0) > have.get("fast", 0)


@SETTINGS
@given(scenarios(limits=True), st.data())
def test_random_grant_is_paid_by_others_and_nobody_else_gains(s: Scenario, data: st.DataObject) -> None:
    """A pin above what a request had: every other request ends with at most what it had."""
    req = data.draw(st.sampled_from(s.requests))
    base = allocate(s)
    had = int(round(base.request(req.id).total))
    room = sum(p.gpus for p in s.pools if usable(req, p))
    if had >= min(req.gpus, room):
        return
    total = data.draw(st.integers(had + 1, min(req.gpus, room)))
    gpus = place(s, req.id, total, {k: int(v) for k, v in base.request(req.id).gpus.items()}, base=base)
    got = absorb(s, base, [Pin(req.id, gpus, "grant")], req.id).allocation
    for r in base.requests:
        if r.id != req.id:
            assert got.request(r.id).total <= r.total + 1e-9, (r.id, r.total, got.request(r.id).total)
