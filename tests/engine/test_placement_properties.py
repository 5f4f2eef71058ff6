"""Properties of the re-placement for a team's own requests (issue 16, engine/_placement.py)
and of the values the top-down pass fixes, on random small trees with sites, several GPU
types and limits."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_properties import scenarios

from fairshare.engine._allocate import solve_exact
from fairshare.engine._group import Unit
from fairshare.engine._guarantees import usable_floors
from fairshare.engine._hierarchy import fill
from fairshare.engine._placement import replace_for_members
from fairshare.engine._problem import compile_scenario
from fairshare.scenario import Pool, Scenario

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def effective(pr, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    return np.bincount(pr.cell_req, weights=x * pr.cell_speed, minlength=pr.n_requests)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # ~5% re-place a team
@given(scenarios(limits=True), st.sampled_from([0.0, 0.02, 0.2]))
def test_no_node_pays_for_another_teams_slack(s: Scenario, slack: float) -> None:
    s = s.model_copy(update={"policy": s.policy.model_copy(update={"placement_slack": slack})})
    pr = compile_scenario(s)
    demand = pr.req_demand.copy()
    floors = usable_floors(pr, demand)
    before = fill(pr, demand, floors).x
    rep = replace_for_members(pr, before, demand, floors)
    event(f"teams re-placed: {len(rep.value)}")
    e0, e1 = effective(pr, before), effective(pr, rep.x)
    moved = np.isin(pr.req_node, list(rep.value))
    # every request outside the re-placed teams keeps its effective GPUs
    assert np.all(e1[~moved] >= e0[~moved] * (1 - 1e-6) - 1e-5)
    # a re-placed team gives up at most its slack, and gains nothing from anyone
    for team, value in rep.value.items():
        total = e1[pr.req_node == team].sum()
        assert (1 - slack) * value - 1e-5 <= total  # (idle GPUs handed out afterwards may add to it)
    used = np.bincount(pr.cell_pool, weights=rep.x, minlength=len(pr.pool_cap))
    assert np.all(used <= pr.pool_cap + 1e-6)
    got = np.bincount(pr.cell_req, weights=rep.x, minlength=pr.n_requests)
    assert np.all(got <= demand + 1e-6)


def top_values(s: Scenario) -> list[float]:
    """The root's children's fixed values per unit of weight (as the root's group froze them;
    0 for a child the group never reached), sorted."""
    sol = solve_exact(s)
    pr = sol.problem
    units = [Unit(True, n) for n in range(1, pr.n_nodes) if pr.node_parent[n] == 0]
    units += [Unit(False, r) for r in range(pr.n_requests) if pr.req_node[r] == 0]
    out = []
    for u in units:
        o = sol.fill.outcomes.get(u)
        weight = pr.node_weight[u.index] if u.is_node else pr.req_weight[u.index]
        out.append(0.0 if o is None else o.freeze.value / weight)
    return sorted(out)


def lex_at_least(a: list[float], b: list[float], tol: float = 1e-6) -> bool:
    for x, y in zip(a, b, strict=True):
        if x > y + tol * (1 + abs(y)):
            return True
        if x < y - tol * (1 + abs(y)):
            return False
    return True


@SETTINGS
@given(scenarios(limits=True), st.integers(0, 30), st.data())
def test_adding_capacity_never_lowers_the_sorted_top_level_values(s: Scenario, more: int, data) -> None:  # noqa: ANN001
    k = data.draw(st.integers(0, len(s.pools) - 1))
    bigger = [
        p if i != k else Pool(name=p.name, gpu=p.gpu, site=p.site, gpus=p.gpus + more) for i, p in enumerate(s.pools)
    ]
    after = s.model_copy(update={"pools": bigger})
    assert lex_at_least(top_values(after), top_values(s))


@st.composite
def swap_labs(draw) -> Scenario:  # noqa: ANN001
    """Two teams on one GPU type at two sites: team a has a request that runs anywhere and one
    bound to Paris, team b one that runs anywhere.  Any Paris GPU b holds, b could hold in Menlo
    at no loss, so a's Paris request never needs to starve while a is below its demand."""
    from fairshare.scenario import OrgNode, Request

    paris, menlo = draw(st.integers(1, 40)), draw(st.integers(0, 40))
    return Scenario(
        name="swap",
        pools=[
            Pool(name="paris", gpu="A100", site="paris", gpus=paris),
            Pool(name="menlo", gpu="A100", site="menlo", gpus=menlo),
        ],
        org=OrgNode(
            name="lab",
            children=[OrgNode(name="a", weight=draw(st.sampled_from([0.5, 1.0, 2.0]))), OrgNode(name="b")],
        ),
        requests=[
            Request(id="a-any", team="a", gpus=draw(st.integers(1, 60))),
            Request(
                id="a-paris",
                team="a",
                gpus=draw(st.integers(1, 20)),
                sites=["paris"],
                weight=draw(st.sampled_from([0.5, 1.0, 2.0])),
            ),
            Request(id="b-any", team="b", gpus=draw(st.integers(1, 60))),
        ],
        policy={"placement_slack": draw(st.sampled_from([0.0, 0.02]))},  # type: ignore[arg-type]
    )


@SETTINGS
@given(swap_labs())
def test_a_site_bound_request_never_starves_while_a_swap_costs_nobody_anything(s: Scenario) -> None:
    from fairshare.engine import allocate

    a = allocate(s, fractional=True)
    team_a = next(n for n in a.nodes if n.name == "a")
    b_in_paris = a.request("b-any").gpus.get("paris", 0.0)
    swap = team_a.effective < team_a.demand - 1e-6 and team_a.effective > 1e-6 and b_in_paris > 1e-6
    event(f"a swap would help: {swap}")
    if swap:
        assert a.request("a-paris").total > 1e-6, a.request("a-paris").reason.text
