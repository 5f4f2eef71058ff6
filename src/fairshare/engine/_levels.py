"""The LP of one depth of the tree: every group of that depth shares out its parent's *value*.

Values are fixed level by level, placement stays free until the leaves.  The LP of depth d
holds the whole lab: its units are the children of every node of depth d (sub-nodes and
requests, each on a level row), every request fixed at a shallower depth is held at its value,
every node of depth d is held at (1 - placement_slack) of its value, and limits and guarantees
are rows on the GPUs their subtree *uses*.  No pool is handed down: a node's GPUs stay
placeable until its requests are asked.

A sub-node's requests enter as classes (same sub-node, same limit/guarantee region, same speed
on every pool: their demands summed), which is exact for the sub-node's effective total.
"""

from __future__ import annotations

import numpy as np

from fairshare.engine._group import GroupModel, Unit, request_classes, unit_weights
from fairshare.engine._highs import INF
from fairshare.engine._problem import Problem


def _regions(pr: Problem) -> tuple[np.ndarray, list[frozenset[int]]]:
    """Each node's region (the nodes with a limit or a guarantee on its path to the root), as
    an id, and each id's set of nodes."""
    bounded = {n for n, _, _ in pr.limits} | {n for n, _, _ in pr.guarantees}
    ids: dict[frozenset[int], int] = {frozenset(): 0}
    node_region = np.zeros(pr.n_nodes, dtype=np.int64)
    if bounded:
        for n in range(pr.n_nodes):
            key = frozenset(a for a in pr.ancestors(n) if a in bounded)
            node_region[n] = ids.setdefault(key, len(ids))
    sets = [frozenset[int]()] * len(ids)
    for key, i in ids.items():
        sets[i] = key
    return node_region, sets


def level_model(
    pr: Problem,
    units: list[Unit],
    unit_parent: np.ndarray,
    demand: np.ndarray,
    floors: dict[tuple[int, int], float],
    held_nodes: list[tuple[int, float, float]],
) -> GroupModel:
    """The whole lab as one group: `units` (the depth's units, then the fixed requests),
    `unit_parent` the node each unit hangs on, `held_nodes` (node, lowest, highest effective total) rows
    for the depth's parents.  Every pool with GPUs is in it, at its full capacity."""
    pools = np.flatnonzero(pr.pool_cap > 1e-9)
    unit_index = np.array([u.index for u in units], dtype=np.int64)
    unit_is_node = np.array([u.is_node for u in units], dtype=bool)
    if unit_is_node.any():
        unit_reqs = [pr.subtree_requests(u.index) if u.is_node else np.array([u.index]) for u in units]
        counts = np.array([len(r) for r in unit_reqs], dtype=np.int64)
        req = np.concatenate(unit_reqs).astype(np.int64) if unit_reqs else np.zeros(0, np.int64)
    else:
        req, counts = unit_index, np.ones(len(units), dtype=np.int64)
    req_unit = np.repeat(np.arange(len(units), dtype=np.int64), counts)
    speeds = pr.speed_matrix[req][:, pools]
    keep = (demand[req] > 0) & (speeds > 0).any(axis=1)
    req, req_unit, speeds = req[keep], req_unit[keep], speeds[keep]

    node_region, region_sets = _regions(pr)
    region_id = node_region[pr.req_node[req]]
    req_class, class_first = request_classes(req_unit, region_id, unit_is_node[req_unit], speeds)
    n_classes = len(class_first)
    class_unit = req_unit[class_first]
    first_speeds = speeds[class_first]
    cls, lp_pool = np.nonzero(first_speeds > 0)
    model = GroupModel(
        parent=int(unit_parent[0]) if len(unit_parent) else 0,
        units=units,
        weights=unit_weights(pr, unit_index, unit_is_node),
        pools=pools,
        capacity=pr.pool_cap[pools].astype(float),
        class_unit=class_unit.astype(int),
        class_demand=np.bincount(req_class, weights=demand[req], minlength=n_classes).astype(float),
        cell_class=cls.astype(int),
        cell_pool=lp_pool.astype(int),
        cell_speed=first_speeds[cls, lp_pool],
    )
    cell_type = pr.pool_type[pools][model.cell_pool]
    class_region = region_id[class_first]
    held = [(n, g, floors.get((n, g), 0.0)) for n, g, _ in pr.guarantees]
    for kind, items in (("limit", pr.limits), ("guarantee", held)):
        for node, gpu, value in items:
            member = np.array([node in region_sets[r] for r in class_region.tolist()], dtype=bool)
            cells = np.flatnonzero(member[model.cell_class] & (cell_type == gpu)) if n_classes else np.zeros(0, int)
            if kind == "limit":
                model.bound_rows.append((cells, -INF, value, kind, node, gpu))
            elif value > 0:
                model.bound_rows.append((cells, value, INF, kind, node, gpu))
    cell_parent = unit_parent[model.class_unit[model.cell_class]] if len(model.cell_class) else np.zeros(0, int)
    for node, lowest, highest in held_nodes:
        model.bound_rows.append((np.flatnonzero(cell_parent == node), lowest, highest, "value", node, -1))
    return model
