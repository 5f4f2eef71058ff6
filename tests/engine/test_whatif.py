"""explain's levers: the smallest change of each lever that gives a request more, and who pays.

The April case: llama-2-70b got nothing for being 22 GPUs short of its minimum of 512, and the
old what-ifs offered only levers that gain nothing.  The search must find the real fixes.
"""

from __future__ import annotations

import pytest

from fairshare.engine import LeverKind, allocate, apply_lever, levers
from fairshare.engine.whatif import MORE
from fairshare.scenario import Scenario
from fairshare.scenario.files import loads_scenario

APRIL = """
name: april
reference_gpu: A100
pools:
  - {name: east-a100, gpu: A100, site: east, gpus: 980}
  - {name: west-v100, gpu: V100, site: west, gpus: 64}
org:
  name: lab
  children:
    - name: fair
      children: [{name: llama}, {name: opt}]
    - name: product
      limit: {A100: 0}
      children: [{name: ads}]
requests:
  - {id: llama-2-70b, team: llama, gpus: 2048, min: 512, speed: {A100: 1.0}}
  - {id: opt-175b, team: opt, gpus: 2048, speed: {A100: 1.0}}
  - {id: ads-ranking, team: ads, gpus: 64, speed: {V100: 1.0}}
"""


def april() -> Scenario:
    return loads_scenario(APRIL, "april.yaml")


def by_kind(found, kind: LeverKind, target: str | None = None):
    return [lv for lv in found.levers + found.no_effect if lv.kind is kind and target in (None, lv.target)]


def test_the_april_case_is_short_of_its_minimum() -> None:
    got = allocate(april()).request("llama-2-70b")
    assert got.total == 0 and got.reason.code == "below_min"


def test_explain_finds_the_largest_minimum_that_is_funded() -> None:
    s = april()
    found = levers(s, "llama-2-70b", allocate(s))
    [minimum] = by_kind(found, LeverKind.minimum)
    assert minimum.effect and minimum.funded
    assert 480 <= minimum.after < 512  # the fair share is 490: a minimum of 480 is funded
    funded = allocate(apply_lever(s, "llama-2-70b", minimum)).request("llama-2-70b")
    assert funded.total == minimum.gain >= minimum.after
    one_more = allocate(
        s.model_copy(
            update={
                "requests": [
                    r.model_copy(update={"min": minimum.after + 1}) if r.id == "llama-2-70b" else r for r in s.requests
                ]
            }
        )
    ).request("llama-2-70b")
    assert one_more.total == 0  # the largest: one GPU more and it is not funded


def test_explain_finds_the_team_weight_fix_and_who_pays() -> None:
    s = april()
    found = levers(s, "llama-2-70b", allocate(s))
    [team] = by_kind(found, LeverKind.node_weight, "llama")
    assert team.effect and team.funded and team.gain >= 512
    assert 1 < team.after <= 1.25  # a small raise of the team's weight funds it
    assert [x.team for x in team.losers] == ["opt"]  # its sibling pays, the other branch does not
    assert team.losers[0].effective == pytest.approx(team.effective_gain)
    again = allocate(apply_lever(s, "llama-2-70b", team)).request("llama-2-70b")
    assert again.total == team.gain


def test_every_reported_lever_is_true_when_re_solved() -> None:
    s = april()
    base = allocate(s)
    found = levers(s, "llama-2-70b", base)
    assert found.levers
    for lv in found.levers:
        got = allocate(apply_lever(s, "llama-2-70b", lv)).request("llama-2-70b")
        assert got.effective - base.request("llama-2-70b").effective == pytest.approx(lv.effective_gain)
        assert lv.effective_gain >= MORE


def test_levers_that_gain_nothing_are_listed_last_once() -> None:
    s = april()
    found = levers(s, "llama-2-70b", allocate(s))
    labels = [lv.label for lv in found.levers + found.no_effect]
    assert len(labels) == len(set(labels))
    assert all(not lv.effect for lv in found.no_effect) and all(lv.effect for lv in found.levers)
    kinds = {lv.kind for lv in found.no_effect}
    # llama's request has no sibling to take GPUs from, and FAIR already has every A100 product may not use
    assert {LeverKind.request_weight, LeverKind.priority} <= kinds
    assert any(lv.kind is LeverKind.node_weight and lv.target == "fair" for lv in found.no_effect)


def test_capacity_lever_is_the_smallest_addition() -> None:
    s = april()
    found = levers(s, "llama-2-70b", allocate(s))
    [pool] = by_kind(found, LeverKind.capacity, "east-a100")
    assert pool.effect and pool.funded
    added = pool.after - 980
    assert 0 < added <= 44  # 1,024 A100s fund both halves of 512
    less = s.model_copy(
        update={
            "pools": [p.model_copy(update={"gpus": pool.after - 1}) if p.name == "east-a100" else p for p in s.pools]
        }
    )
    assert allocate(less).request("llama-2-70b").total == 0


def test_a_binding_limit_is_raised_by_the_smallest_step() -> None:
    s = loads_scenario(
        """
name: capped
pools: [{name: p, gpu: A100, gpus: 100}]
org:
  name: lab
  children: [{name: a, limit: {A100: 30}}, {name: b}]
requests:
  - {id: ra, team: a, gpus: 100}
  - {id: rb, team: b, gpus: 100}
""",
        "capped.yaml",
    )
    found = levers(s, "ra", allocate(s))
    [limit] = by_kind(found, LeverKind.limit, "a")
    assert limit.after == 31 and limit.gain == 1
    assert [x.team for x in limit.losers] == ["b"]


def test_another_site_is_a_lever() -> None:
    s = loads_scenario(
        """
name: sites
pools:
  - {name: paris, gpu: A100, site: paris, gpus: 8}
  - {name: menlo, gpu: A100, site: menlo, gpus: 64}
org: {name: lab, children: [{name: a}, {name: b}]}
requests:
  - {id: ra, team: a, gpus: 32, sites: [paris]}
  - {id: rb, team: b, gpus: 16}
""",
        "sites.yaml",
    )
    found = levers(s, "ra", allocate(s))
    [site] = by_kind(found, LeverKind.site, "menlo")
    assert site.effect and site.gain > 0 and site.losers == []  # menlo's spare GPUs cost nobody


def test_a_request_with_all_it_asked_for_has_nothing_to_search() -> None:
    s = april()
    found = levers(s, "ads-ranking", allocate(s))
    assert found.satisfied and found.solves == 0 and not found.levers


def test_the_search_stays_within_its_bound_and_stops_when_told() -> None:
    s = april()
    base = allocate(s)
    calls: list[tuple[int, int]] = []
    found = levers(s, "llama-2-70b", base, lambda done, total: calls.append((done, total)))
    assert 0 < found.solves <= found.bound
    assert calls[0] == (0, found.bound) and calls[-1] == (found.solves, found.solves)
    assert all(done <= total for done, total in calls)
    budget = iter(range(5))
    cut = levers(s, "llama-2-70b", base, stop=lambda: next(budget, None) is None)
    assert cut.solves == 5 and not cut.complete and cut.not_searched
    assert len(cut.levers) + len(cut.no_effect) + len(cut.not_searched) == len(found.levers) + len(found.no_effect)


def test_an_unsolvable_change_is_no_way_to_more() -> None:
    """A guarantee is searched only up to what the other guarantees leave (beyond, the scenario is
    infeasible): the search never raises and says what it tried."""
    s = loads_scenario(
        """
name: held
pools: [{name: p, gpu: A100, gpus: 10}]
org:
  name: lab
  children: [{name: a}, {name: b, guarantee: {A100: 8}}]
requests:
  - {id: ra, team: a, gpus: 10}
  - {id: rb, team: b, gpus: 10}
""",
        "held.yaml",
    )
    base = allocate(s)
    assert base.request("ra").total == 2  # held down by b's guarantee
    found = levers(s, "ra", base)
    [g] = by_kind(found, LeverKind.guarantee, "a")
    assert not g.effect and g.searched == "up to 2 A100 GPUs"  # what b's guarantee leaves: no gain there
