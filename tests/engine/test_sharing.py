"""policy.sharing: `total` (weights divide the whole, a guarantee is a floor) and `surplus` (guarantees
first, weights divide what is above them, as Kueue's fair sharing and KAI's over-quota weights do).

The peers' cases are taken from their own tests, named with their source; a quota there is a
guarantee here, a ClusterQueue or queue is a team, a workload of 1 CPU (or GPU) is one GPU asked.
The property tests compare `surplus` with a direct recursive computation of the rule.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_feasible, idle_usable, type_used_in_subtree
from fairshare.engine import InfeasibleGuarantees, allocate
from fairshare.scenario import OrgNode, Policy, Pool, Request, Scenario, Sharing
from fairshare.scenario.files import load_scenario

KUEUE_FAIR = "kubernetes-sigs/kueue test/integration/singlecluster/scheduler/fairsharing/fair_sharing_test.go"  # https://github.com/kubernetes-sigs/kueue/blob/main/test/integration/singlecluster/scheduler/fairsharing/fair_sharing_test.go
KAI_DIVISION = "NVIDIA/KAI-Scheduler pkg/scheduler/plugins/proportion/resource_division/resource_division_test.go"  # https://github.com/NVIDIA/KAI-Scheduler/blob/main/pkg/scheduler/plugins/proportion/resource_division/resource_division_test.go
approx = lambda v: pytest.approx(v, abs=1e-5)  # noqa: E731


def lab(
    capacity: int,
    teams: list[tuple[str, float, int, int]],
    sharing: Sharing,
    idle: tuple[str, int] | None = None,
) -> Scenario:
    """One GPU type; teams (name, weight, guarantee, GPUs asked) under one root; `idle`: a team
    with a guarantee and no request (Kueue's lending ClusterQueue, e.g. "shared" with quota 4)."""
    nodes = [
        OrgNode(name=name, weight=weight, guarantee={"gpu": quota} if quota else {}) for name, weight, quota, _ in teams
    ]
    if idle is not None:
        nodes.append(OrgNode(name=idle[0], guarantee={"gpu": idle[1]}))
    return Scenario(
        name="peers",
        pools=[Pool(name="p", gpu="gpu", gpus=capacity)],
        org=OrgNode(name="all", children=nodes),
        requests=[Request(id=name, team=name, gpus=asked) for name, _, _, asked in teams if asked],
        policy=Policy(sharing=sharing),
    )


def got(s: Scenario, fractional: bool = True) -> dict[str, float]:
    return {r.id: r.total for r in allocate(s, fractional=fractional).requests}


# --- the example: Kueue's fair-sharing test -------------------------------------------------


def test_surplus_gives_the_quota_then_the_surplus_by_weight_as_kueue_does() -> None:
    """KUEUE_FAIR "Preemption is disabled / Admits workloads respecting fair share": queues a
    (quota 3), b (quota 1) and shared (quota 4, no workloads) in cohort "all".  After 4 of a's 10
    workloads finish, a has 6 and b 5 pending or running: Kueue admits 5 of a's and 3 of b's
    (weighted shares 250 and 250: each borrows 2 of the 8)."""
    s = lab(8, [("a", 1, 3, 6), ("b", 1, 1, 5)], Sharing.surplus, idle=("shared", 4))
    assert got(s) == {"a": approx(5), "b": approx(3)}
    assert got(s, fractional=False) == {"a": 5, "b": 3}


def test_total_sharing_gives_the_same_lab_four_and_four() -> None:
    s = lab(8, [("a", 1, 3, 6), ("b", 1, 1, 5)], Sharing.total, idle=("shared", 4))
    assert got(s) == {"a": approx(4), "b": approx(4)}


def test_surplus_reason_names_the_quota_and_the_part_of_the_surplus() -> None:
    s = lab(8, [("a", 1, 3, 6), ("b", 1, 1, 5)], Sharing.surplus, idle=("shared", 4))
    reasons = {r.id: r.reason.text for r in allocate(s).requests}
    assert "a got its guarantee of 3 gpu + 2 GPUs of the surplus by weight" in reasons["a"]
    assert "b got its guarantee of 1 gpu + 2 GPUs of the surplus by weight" in reasons["b"]


def test_total_reasons_say_nothing_of_a_surplus() -> None:
    s = lab(8, [("a", 1, 3, 6), ("b", 1, 1, 5)], Sharing.total, idle=("shared", 4))
    assert all("surplus" not in r.reason.text for r in allocate(s).requests)


def test_surplus_a_queue_below_its_fair_part_lends_the_rest_as_kueue_does() -> None:
    """KUEUE_FAIR, same test, after 2 more of a's workloads finish: a has 4, b 5; Kueue admits
    a's last 1 and b's 1 more: 4 and 4 (weighted shares 125 and 375)."""
    s = lab(8, [("a", 1, 3, 4), ("b", 1, 1, 5)], Sharing.surplus, idle=("shared", 4))
    assert got(s) == {"a": approx(4), "b": approx(4)}


def test_surplus_one_queue_alone_borrows_the_whole_cohort_as_kueue_does() -> None:
    """KUEUE_FAIR, same test, at the start: a's 10 workloads alone, 8 admitted (share 625: 5 of 8 borrowed)."""
    s = lab(8, [("a", 1, 3, 10), ("b", 1, 1, 0)], Sharing.surplus, idle=("shared", 4))
    assert got(s) == {"a": approx(8)}


def test_surplus_with_preemption_reclaims_quota_as_kueue_does() -> None:
    """KUEUE_FAIR "Preemption is enabled": a, b, c with quota 3 each.  a's 10 workloads and b's 5:
    Kueue preempts a down to 5 and admits 4 of b's (shares 222, 111: Kueue stops one workload short
    of the even 4.5 / 4.5, as it admits whole workloads).  Then c asks 1: a 4, b 4, c 1."""
    s = lab(9, [("a", 1, 3, 10), ("b", 1, 3, 5), ("c", 1, 3, 0)], Sharing.surplus)
    assert got(s) == {"a": approx(4.5), "b": approx(4.5)}
    assert sorted(got(s, fractional=False).values()) == [4, 5]
    s = lab(9, [("a", 1, 3, 10), ("b", 1, 3, 5), ("c", 1, 3, 1)], Sharing.surplus)
    assert got(s, fractional=False) == {"a": 4, "b": 4, "c": 1}


def test_surplus_hierarchical_cohorts_borrow_from_the_bank_as_kueue_does() -> None:
    """KUEUE_FAIR "using hierarchical cohorts / admits workloads respecting fair share": root has
    first-left (second-left: queue of quota 2, second-right: queue of quota 2) and first-right
    (bank: cohort of quota 10, no queue).  5 workloads each on the two queues: all 10 admitted."""
    s = Scenario(
        name="cohorts",
        pools=[Pool(name="p", gpu="cpu", gpus=14)],
        org=OrgNode(
            name="root",
            children=[
                OrgNode(
                    name="first-left",
                    children=[
                        OrgNode(name="second-left", guarantee={"cpu": 2}),
                        OrgNode(name="second-right", guarantee={"cpu": 2}),
                    ],
                ),
                OrgNode(name="first-right", children=[OrgNode(name="bank", guarantee={"cpu": 10})]),
            ],
        ),
        requests=[Request(id="l", team="second-left", gpus=5), Request(id="r", team="second-right", gpus=5)],
        policy=Policy(sharing=Sharing.surplus),
    )
    assert got(s) == {"l": approx(5), "r": approx(5)}


def test_surplus_weights_at_every_level_as_kueue_hierarchical_preemption() -> None:
    """KUEUE_FAIR "using hierarchical cohorts / preempts workloads to enforce fair share": 12 CPUs,
    root: best-effort (weight 0.5), research (chemistry, physics, llm weight 2), quotas 0, every
    queue wanting 6 or more: best-effort 4, chemistry 2, physics 2, llm 4 (no quotas: both
    rules agree)."""
    for sharing in Sharing:
        s = Scenario(
            name="research",
            pools=[Pool(name="p", gpu="cpu", gpus=12)],
            org=OrgNode(
                name="root",
                children=[
                    OrgNode(name="best-effort", weight=0.5),
                    OrgNode(
                        name="research",
                        children=[OrgNode(name="chemistry"), OrgNode(name="physics"), OrgNode(name="llm", weight=2)],
                    ),
                ],
            ),
            requests=[
                Request(id="best-effort", team="best-effort", gpus=12),
                Request(id="chemistry", team="chemistry", gpus=6),
                Request(id="physics", team="physics", gpus=12),
                Request(id="llm", team="llm", gpus=6),
            ],
            policy=Policy(sharing=sharing),
        )
        assert got(s) == {"best-effort": approx(4), "chemistry": approx(2), "physics": approx(2), "llm": approx(4)}


# --- KAI's resource division ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "weights", "asked", "limit", "expected"),
    [
        (15, (2, 2), (6, 6), None, (6, 6)),  # "allocates many available gpus" (3 left over)
        (12, (2, 2), (6, 6), None, (6, 6)),  # "allocates exact requested amount gpus"
        (8, (1, 3), (6, 6), None, (3, 5)),  # "allocates GPUs proportionally": 2 + 1, 2 + 3
        (12, (2, 2), (6, 6), 5, (5, 6)),  # "doesn't allocate more than allowed" (maxAllowed 5)
        (
            11,
            (1, 4),
            (10, 10),
            None,
            (3.4, 7.6),
        ),  # "distributes remainder ... largest remaining": exact 2 + 1.4, 2 + 5.6
        (11, (2, 2), (6, 6), None, (5.5, 5.5)),  # "distributes remainder ... creation time": exact 2 + 3.5 each
    ],
)
def test_surplus_reproduces_kais_resource_division(
    capacity: int, weights: tuple[float, float], asked: tuple[int, int], limit: int | None, expected: tuple
) -> None:
    """KAI_DIVISION "two queues": each queue deserves 2 GPUs; the over-quota weights divide the rest."""
    teams = [("q1", weights[0], 2, asked[0]), ("q2", weights[1], 2, asked[1])]
    s = lab(capacity, teams, Sharing.surplus)
    if limit is not None:
        org = s.org.model_copy(
            update={"children": [s.org.children[0].model_copy(update={"limit": {"gpu": limit}}), s.org.children[1]]}
        )
        s = s.model_copy(update={"org": org})
    assert got(s) == {"q1": approx(expected[0]), "q2": approx(expected[1])}


def test_surplus_rounds_kais_remainder_to_the_larger_fraction() -> None:
    """KAI_DIVISION "distributes remainder between queues based on largest remaining": 3 and 8."""
    s = lab(11, [("q1", 1, 2, 10), ("q2", 4, 2, 10)], Sharing.surplus)
    assert got(s, fractional=False) == {"q1": 3, "q2": 8}


def test_total_differs_from_kai_where_quotas_are_not_proportional_to_weights() -> None:
    """KAI_DIVISION "allocates GPUs proportionally" under total: weights 1:3 of 8 give 2 and 6."""
    s = lab(8, [("q1", 1, 2, 6), ("q2", 3, 2, 6)], Sharing.total)
    assert got(s) == {"q1": approx(2), "q2": approx(6)}


# --- the rule, against a direct computation ---------------------------------------------------------


def reference_surplus(s: Scenario) -> dict[str, float]:
    """The surplus rule computed directly on one GPU type (no sites, speeds or limits): top-down,
    each node's amount goes to its children as min(asked, base + weight x t), with the one t that
    hands out the amount (bisection); base = min(guarantee, asked, capacity), or the sum of the children's
    bases if larger; a team's requests share its amount the same way with base 0."""
    asked: dict[str, float] = {}

    def demand(node: OrgNode) -> float:
        own = sum(r.gpus for r in s.requests if r.team == node.name)
        asked[node.name] = own + sum(demand(c) for c in node.children)
        return asked[node.name]

    demand(s.org)
    base: dict[str, float] = {}

    def bases(node: OrgNode) -> float:
        below = sum(bases(c) for c in node.children)
        usable = min(asked[node.name], s.pools[0].gpus)
        base[node.name] = max(min(node.guarantee.get("gpu", 0), usable), below)
        return base[node.name]

    bases(s.org)
    out: dict[str, float] = {}

    def share(node: OrgNode, amount: float) -> None:
        units = [(c.name, c.weight, base[c.name], asked[c.name], c) for c in node.children]
        units += [(r.id, r.weight, 0.0, float(r.gpus), None) for r in s.requests if r.team == node.name]
        if not units:
            return

        def given(t: float) -> list[float]:
            return [min(cap, b + w * t) for _, w, b, cap, _ in units]

        lo, hi = 0.0, max(amount, 1.0) / min(w for _, w, _, _, _ in units) + 1.0
        if sum(given(hi)) <= amount:
            parts = given(hi)
        else:
            for _ in range(200):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if sum(given(mid)) <= amount else (lo, mid)
            parts = given(lo)
        for (name, _, _, _, child), part in zip(units, parts, strict=True):
            if child is None:
                out[name] = part
            else:
                share(child, part)

    share(s.org, float(s.pools[0].gpus))
    return out


@st.composite
def guaranteed_labs(draw) -> Scenario:
    counter = [0]

    def node(level: int) -> OrgNode:
        counter[0] += 1
        name = f"n{counter[0]}"
        kids = [node(level + 1) for _ in range(draw(st.integers(0, 3)))] if level < 2 else []
        quota = draw(st.sampled_from([0, 0, 1, 2, 3, 5])) if level else 0
        return OrgNode(
            name=name,
            weight=draw(st.sampled_from([0.5, 1.0, 2.0, 3.0])) if level else 1.0,
            guarantee={"gpu": quota} if quota else {},
            children=kids,
        )

    org = node(0)
    leaves = [n.name for n in org.walk() if not n.children]
    requests = [
        Request(
            id=f"r{i}",
            team=draw(st.sampled_from(leaves)),
            gpus=draw(st.integers(1, 12)),
            weight=draw(st.sampled_from([1.0, 2.0])),
        )
        for i in range(draw(st.integers(1, 7)))
    ]
    return Scenario(
        name="random",
        pools=[Pool(name="p", gpu="gpu", gpus=draw(st.integers(1, 30)))],
        org=org,
        requests=requests,
        policy=Policy(sharing=Sharing.surplus),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(guaranteed_labs())
def test_surplus_equals_the_direct_computation_on_random_guaranteed_trees(s: Scenario) -> None:
    try:
        alloc = allocate(s, fractional=True)
    except InfeasibleGuarantees:
        return  # guarantees above the capacity: an error in both rules
    assert_feasible(s, alloc)
    expected = reference_surplus(s)
    for r in alloc.requests:
        assert r.total == pytest.approx(expected[r.id], abs=1e-4), r.id


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(guaranteed_labs())
def test_without_guarantees_surplus_is_total(s: Scenario) -> None:
    bare = s.model_copy(update={"org": _without_guarantees(s.org)})
    surplus = allocate(bare, fractional=True)
    total = allocate(bare.model_copy(update={"policy": Policy(sharing=Sharing.total)}), fractional=True)
    for a, b in zip(surplus.requests, total.requests, strict=True):
        assert a.total == pytest.approx(b.total, abs=1e-6)


def _without_guarantees(node: OrgNode) -> OrgNode:
    return node.model_copy(update={"guarantee": {}, "children": [_without_guarantees(c) for c in node.children]})


@st.composite
def mixed_labs(draw) -> Scenario:
    """Several GPU types and sites, speeds, guarantees and limits on a two-level tree."""
    types, sites = ["A", "B"], ["s1", "s2"]
    pools = [Pool(name=f"{g}-{x}", gpu=g, site=x, gpus=draw(st.integers(0, 12))) for g in types for x in sites]
    teams = []
    for i in range(draw(st.integers(2, 4))):
        guarantee = {g: draw(st.integers(0, 4)) for g in types if draw(st.booleans())}
        limit = {g: draw(st.integers(4, 15)) for g in types if draw(st.integers(0, 3)) == 0}
        teams.append(
            OrgNode(name=f"t{i}", weight=draw(st.sampled_from([0.5, 1.0, 2.0])), guarantee=guarantee, limit=limit)
        )
    org = OrgNode(name="root", children=[OrgNode(name="g1", children=teams[:2]), *teams[2:]])
    requests = []
    for i in range(draw(st.integers(1, 7))):
        speed = {g: draw(st.sampled_from([0.5, 1.0, 2.0])) for g in types if draw(st.booleans())} or None
        requests.append(
            Request(
                id=f"r{i}",
                team=draw(st.sampled_from([t.name for t in teams])),
                gpus=draw(st.integers(1, 12)),
                speed=speed,
                sites=[draw(st.sampled_from(sites))] if draw(st.integers(0, 3)) == 0 else None,
            )
        )
    return Scenario(name="mixed", pools=pools, org=org, requests=requests, policy=Policy(sharing=Sharing.surplus))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed_labs())
def test_surplus_on_mixed_labs_is_feasible_pareto_and_keeps_the_guarantees(s: Scenario) -> None:
    try:
        exact = allocate(s, fractional=True)
    except InfeasibleGuarantees:
        return
    assert_feasible(s, exact)
    whole = allocate(s)
    assert_feasible(s, whole)
    assert all(float(n).is_integer() for r in whole.requests for n in r.gpus.values())
    as_total = s.model_copy(update={"policy": Policy(sharing=Sharing.total)})
    # no usable whole GPU idle wherever `total` leaves none (with limits on several types it rarely
    # leaves one: a gap of the engine's limit handling, whatever the sharing rule)
    if not idle_usable(as_total, allocate(as_total), min_idle=0.5, min_hunger=0.5):
        assert not idle_usable(s, whole, min_idle=0.5, min_hunger=0.5)
    total = allocate(as_total, fractional=True)
    for node in s.org.walk():  # both rules meet the same floors: what a guarantee holds, it holds in both
        for gpu in node.guarantee:
            held = min(type_used_in_subtree(s, total, node, gpu), node.guarantee[gpu])
            assert type_used_in_subtree(s, exact, node, gpu) >= held - 1e-4, (node.name, gpu)


def test_the_kueue_example_file_reproduces_kueues_split() -> None:
    s = load_scenario(Path(__file__).resolve().parents[2] / "examples" / "kueue-fair-sharing.yaml")
    assert got(s, fractional=False) == {"a-jobs": 5, "b-jobs": 3}
    as_total = s.model_copy(update={"policy": Policy(sharing=Sharing.total)})
    assert got(as_total, fractional=False) == {"a-jobs": 4, "b-jobs": 4}


def _drop_guarantee(node: OrgNode, name: str) -> OrgNode:
    kids = [_drop_guarantee(c, name) for c in node.children]
    return node.model_copy(update={"guarantee": {} if node.name == name else node.guarantee, "children": kids})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(guaranteed_labs())
def test_a_surplus_reason_names_a_guarantee_without_which_its_node_gets_no_more(s: Scenario) -> None:
    """Counterfactual: the node a reason credits with a guarantee gets at most as much without it."""
    try:
        alloc = allocate(s, fractional=True)
    except InfeasibleGuarantees:
        return
    credited = {
        r.reason.text.split("; ")[-1].split(" ")[0] for r in alloc.requests if "of the surplus" in r.reason.text
    }
    for name in credited:
        without = allocate(s.model_copy(update={"org": _drop_guarantee(s.org, name)}), fractional=True)
        assert without.node(name).effective <= alloc.node(name).effective + 1e-5, name
