"""A guarantee on a node above sub-nodes binds what its requests *use*, not only the GPUs handed
down to its children (issue 16): each ancestor's floor is handed down into the groups below."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import scenarios

from fairshare.engine import allocate
from fairshare.engine._guarantees import usable_floors
from fairshare.engine._problem import compile_scenario
from fairshare.scenario import OrgNode, Scenario
from fairshare.scenario.files import loads_scenario

ROOT = """
name: root-guarantee-missed
pools:
  - {name: b, gpu: B, gpus: 4}
  - {name: c, gpu: C, gpus: 1}
org:
  name: root
  guarantee: {C: 1}
  children: [{name: team}]
requests:
  - {id: r0, team: team, gpus: 1, speed: {B: 3.0, C: 1.0}}
  - {id: r1, team: team, gpus: 4, speed: {B: 1.0}}
"""

ONE_DOWN = """
name: org-guarantee-missed
pools:
  - {name: b, gpu: B, gpus: 4}
  - {name: c, gpu: C, gpus: 1}
  - {name: d, gpu: B, gpus: 2}
org:
  name: root
  children:
    - {name: org, guarantee: {C: 1}, children: [{name: team}]}
    - {name: other}
requests:
  - {id: r0, team: team, gpus: 1, speed: {B: 3.0, C: 1.0}}
  - {id: r1, team: team, gpus: 4, speed: {B: 1.0}}
  - {id: r2, team: other, gpus: 2, speed: {B: 1.0}}
"""


def test_a_root_guarantee_is_used_by_the_team_below_it() -> None:
    a = allocate(loads_scenario(ROOT))
    assert a.request("r0").gpus == {"c": 1}  # the guaranteed C GPU runs r0
    assert a.request("r1").gpus == {"b": 4}  # so r1 gets all of b
    assert next(p for p in a.pools if p.name == "c").allocated == 1


def test_a_guarantee_one_level_down_is_used_too() -> None:
    a = allocate(loads_scenario(ONE_DOWN))
    assert a.request("r0").gpus == {"c": 1}
    assert a.request("r1").total == 4 and a.request("r2").total == 2


def _with_guarantees(s: Scenario, data: st.DataObject) -> Scenario:
    """`s` with a guarantee on some inner nodes (a type its pools have, at most their GPUs)."""
    capacity: dict[str, int] = {}
    for p in s.pools:
        capacity[p.gpu] = capacity.get(p.gpu, 0) + p.gpus

    def walk(n: OrgNode) -> OrgNode:
        kids = [walk(c) for c in n.children]
        guarantee = {}
        if kids and data.draw(st.booleans()):
            gpu = data.draw(st.sampled_from(sorted(capacity)))
            guarantee = {gpu: data.draw(st.integers(0, max(0, capacity[gpu] // 2)))}
        return n.model_copy(update={"children": kids, "guarantee": guarantee})

    return s.model_copy(update={"org": walk(s.org)})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.data())
def test_every_guarantee_floor_is_used_by_its_subtrees_requests(s: Scenario, data: st.DataObject) -> None:
    s = _with_guarantees(s, data)
    try:
        a = allocate(s, fractional=True)
    except Exception as e:  # guarantees that cannot hold together are the user's to fix
        assert type(e).__name__ == "InfeasibleGuarantees"
        return
    pr = compile_scenario(s)
    floors = usable_floors(pr, pr.req_demand.copy())
    x = np.zeros(pr.n_cells)
    cell = {(r, p): c for c, (r, p) in enumerate(zip(pr.cell_req.tolist(), pr.cell_pool.tolist(), strict=True))}
    for r, req in enumerate(a.requests):
        for pool, gpus in req.gpus.items():
            x[cell[(r, pr.pool_names.index(pool))]] = gpus
    for (node, gpu), floor in floors.items():
        used = float(x[pr.subtree_type_cells(node, gpu)].sum())
        assert used >= floor - 1e-5, (pr.node_names[node], pr.types[gpu], used, floor)
