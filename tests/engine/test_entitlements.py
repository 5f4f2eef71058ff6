"""Entitlements (fairshare.engine.entitlements): what every org node gets, its fair share, and why.

The answer to "what am I entitled to, and why does my neighbour get more?": per node, its GPUs
per pool (the sum of its subtree's requests), its fair share (parent's effective GPUs x its
weight / the weights of everything sharing the parent), its siblings, and one sentence.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from test_properties import scenarios

from conftest import subtree_names
from fairshare.engine import allocate
from fairshare.engine.entitlements import entitlements
from fairshare.engine.overrides import Pin, allocate_with_pins
from fairshare.scenario import Scenario
from fairshare.scenario.files import loads_scenario

# 70 GPUs (80 effective: llama runs at 2x on H100), 402 asked for.  lab's GPUs are shared by
# fair (weight 2), genai, small, idle and the request `infra` hanging on lab itself (weight 2).
LAB = loads_scenario("""
name: ents
pools:
  - {name: a100, gpu: A100, gpus: 60}
  - {name: h100, gpu: H100, gpus: 10}
org:
  name: lab
  children:
    - name: fair
      weight: 2
      children:
        - {name: llama, weight: 2}
        - {name: opt}
    - name: genai
      limit: {A100: 10}
      children: [{name: assistants}]
    - {name: small}
    - {name: idle}
requests:
  - {id: llama-70b, team: llama, gpus: 100, speed: {H100: 2, A100: 1}}
  - {id: opt-175b, team: opt, gpus: 100, speed: {A100: 1}}
  - {id: assistant, team: assistants, gpus: 100, speed: {A100: 1}}
  - {id: tiny, team: small, gpus: 2}
  - {id: infra, team: lab, gpus: 100, weight: 2}
""")
ORDER = ["lab", "fair", "llama", "opt", "genai", "assistants", "small", "idle"]


@pytest.fixture(scope="module")
def lab():
    alloc = allocate(LAB)
    return alloc, entitlements(LAB, alloc)


def per_pool_of(scenario: Scenario, alloc, node: str) -> tuple[Counter, int]:
    inside = subtree_names(next(n for n in scenario.org.walk() if n.name == node))
    gpus: Counter = Counter()
    demand = 0
    for r in alloc.requests:
        if r.team in inside:
            demand += r.demand
            for p, n in r.gpus.items():
                gpus[p] += int(round(n))
    return gpus, demand


def test_one_entitlement_per_node_parents_before_children(lab) -> None:
    _, ents = lab
    assert list(ents) == ORDER
    assert [e.parent for e in ents.values()] == [None, "lab", "fair", "fair", "lab", "genai", "lab", "lab"]


def test_a_nodes_gpus_are_the_sum_of_its_subtrees_requests_per_pool(lab) -> None:
    alloc, ents = lab
    for name, e in ents.items():
        gpus, demand = per_pool_of(LAB, alloc, name)
        assert e.gpus == {p: n for p, n in gpus.items() if n}, name
        assert e.total == sum(gpus.values())
        assert e.demand == demand
        assert e.effective == pytest.approx(alloc.node(name).effective)
    assert ents["lab"].gpus == {"a100": 60, "h100": 10} and ents["lab"].demand == 402
    assert ents["fair"].total == ents["llama"].total + ents["opt"].total
    assert ents["idle"].gpus == {} and ents["idle"].total == 0


def test_fair_share_is_the_parents_effective_by_weight_among_siblings(lab) -> None:
    _, ents = lab
    llama, opt, fair = ents["llama"], ents["opt"], ents["fair"]
    assert llama.fair_share == pytest.approx(fair.effective * 2 / 3, abs=1e-6)
    assert opt.fair_share == pytest.approx(fair.effective * 1 / 3, abs=1e-6)
    assert ents["assistants"].fair_share == pytest.approx(ents["genai"].effective)  # an only child
    assert ents["lab"].fair_share is None and ents["lab"].share_of_fair is None


def test_a_request_on_the_parent_shares_it_as_one_more_sibling(lab) -> None:
    """lab's 80 effective GPUs are shared by weights fair 2, genai 1, small 1, idle 1 and infra 2."""
    _, ents = lab
    root = ents["lab"].effective
    assert root == pytest.approx(80)
    assert ents["fair"].fair_share == pytest.approx(root * 2 / 7, abs=1e-6)
    for name in ("genai", "small", "idle"):
        assert ents[name].fair_share == pytest.approx(root / 7, abs=1e-6)
    assert "weight 2 of 7 among lab's children" in ents["fair"].reason


def test_share_of_fair_is_effective_over_fair_share(lab) -> None:
    _, ents = lab
    for e in ents.values():
        if e.fair_share:
            assert e.share_of_fair == pytest.approx(e.effective / e.fair_share, abs=1e-5)
    assert ents["idle"].share_of_fair == 0


def test_a_team_that_got_all_it_asked_for_says_so(lab) -> None:
    _, ents = lab
    assert ents["small"].reason == "small gets 2 GPUs (2 effective): all 2 it asked for."
    assert ents["small"].codes_only("demand_met")
    assert "all" not in ents["opt"].reason.split(";")[0]


def test_a_capped_team_names_the_limiting_node(lab) -> None:
    _, ents = lab
    for name in ("genai", "assistants"):
        assert ents[name].reasons == {"limit": 1}
        assert "capped by the limit of genai" in ents[name].reason
        assert ents[name].reason.startswith(f"{name} gets 10 GPUs (10 effective) of the 100 it asked for")
    assert "limit" not in ents["llama"].reason and "limit" not in ents["opt"].reason


def test_a_team_below_everyones_demand_gives_its_weight_fair_share_and_level(lab) -> None:
    _, ents = lab
    opt = ents["opt"].reason
    assert opt.startswith("opt gets 11 GPUs (11 effective) of the 100 it asked for")
    assert "its weight 1 of 3 among fair's children entitles it to 11.3 effective GPUs" in opt
    assert "97% of that" in opt
    assert "fair level 11.33" in opt


def test_the_roots_sentence_gives_capacity_and_demand(lab) -> None:
    _, ents = lab
    assert ents["lab"].reason == "lab gets 70 GPUs (80 effective) of the 70 in the pools, against 402 asked for."


def test_the_roots_sentence_gives_capacity_even_when_gpus_stay_idle() -> None:
    s = loads_scenario("""
name: idle-gpus
pools: [{name: h100, gpu: H100, gpus: 4}, {name: a100, gpu: A100, gpus: 100}]
org: {name: lab, children: [{name: a}, {name: b}]}
requests:
  - {id: ra, team: a, gpus: 50, speed: {H100: 1}}
  - {id: rb, team: b, gpus: 10, speed: {A100: 1}}
""")
    ents = entitlements(s, allocate(s))
    assert ents["lab"].reason == "lab gets 14 GPUs (14 effective) of the 104 in the pools, against 60 asked for."
    assert ents["b"].reason == "b gets 10 GPUs (10 effective): all 10 it asked for."


def test_a_node_without_requests_says_it_asked_for_nothing(lab) -> None:
    _, ents = lab
    assert ents["idle"].reason == "idle asked for no GPUs in this round."


def test_siblings_are_listed_with_their_weights_without_the_node_itself(lab) -> None:
    _, ents = lab
    assert [(s.node, s.weight) for s in ents["fair"].siblings] == [("genai", 1.0), ("small", 1.0), ("idle", 1.0)]
    assert [(s.node, s.weight) for s in ents["opt"].siblings] == [("llama", 2.0)]
    assert ents["assistants"].siblings == [] and ents["lab"].siblings == []
    llama = ents["opt"].siblings[0]
    assert (llama.demand, llama.gpus, llama.effective) == (100, ents["llama"].total, ents["llama"].effective)


def test_reason_codes_are_counted_over_the_subtree(lab) -> None:
    _, ents = lab
    assert ents["lab"].reasons == {"fair_share": 3, "limit": 1, "demand_met": 1}
    assert ents["fair"].reasons == {"fair_share": 2}
    assert ents["idle"].reasons == {}


def test_an_override_is_named_in_the_sentence() -> None:
    alloc = allocate_with_pins(LAB, [Pin("opt-175b", {"a100": 5}, "paused")])
    ents = entitlements(LAB, alloc)
    assert ents["opt"].gpus == {"a100": 5} and ents["opt"].reasons == {"override": 1}
    assert "1 request(s) set by a committee override" in ents["opt"].reason
    assert ents["fair"].reasons == {"override": 1, "fair_share": 1}


def test_an_unfunded_minimum_is_named_in_the_sentence() -> None:
    s = loads_scenario("""
name: min
pools: [{name: a100, gpu: A100, gpus: 20}]
org: {name: lab, children: [{name: a}, {name: b}]}
requests:
  - {id: big, team: a, gpus: 100, min: 15}
  - {id: rb, team: b, gpus: 100}
""")
    ents = entitlements(s, allocate(s))
    assert ents["a"].total == 0 and ents["a"].reasons == {"below_min": 1}
    assert "1 request(s) not funded below their minimum" in ents["a"].reason
    assert ents["b"].total == 20


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(limits=True))
def test_random_entitlements_add_up_and_fair_shares_split_the_parent(s: Scenario) -> None:
    alloc = allocate(s)
    ents = entitlements(s, alloc)
    assert list(ents) == [n.name for n in s.org.walk()]
    for node in s.org.walk():
        e = ents[node.name]
        gpus, demand = per_pool_of(s, alloc, node.name)
        assert e.gpus == {p: n for p, n in gpus.items() if n} and e.demand == demand
        assert e.reason.startswith(node.name) and e.reason.endswith(".")
        if not node.children:
            continue
        kids = [ents[c.name] for c in node.children]
        kid_w = sum(c.weight for c in node.children)
        direct_w = sum(r.weight for r in alloc.requests if r.team == node.name)
        # the children's fair shares and the direct requests' shares split the parent exactly
        assert sum(k.fair_share for k in kids) == pytest.approx(e.effective * kid_w / (kid_w + direct_w), abs=1e-4)
        for k in kids:
            assert [sib.node for sib in k.siblings] == [c.name for c in node.children if c.name != k.node]
