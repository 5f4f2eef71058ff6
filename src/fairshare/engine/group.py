"""One sibling group as an LP: a node's children sharing the node's allotment.

A node's allotment is a number of GPUs per pool (decided at its parent's level).  Its
children (sub-nodes and requests hanging on it) are the *units* of the group.  A sub-node's
requests enter as *classes*: requests of the same unit with the same usable pools, speeds
and limit/guarantee region are merged (their sum of demand), which is exact for the unit's
effective throughput and keeps the upper levels' LPs small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from fairshare.engine.highs import INF, LP
from fairshare.engine.problem import Problem


@dataclass(frozen=True)
class Unit:
    """A child in the tree: a sub-node or a request hanging on a node."""

    is_node: bool
    index: int


@dataclass
class GroupModel:
    parent: int
    units: list[Unit]
    weights: np.ndarray  # per unit
    pools: np.ndarray  # global pool ids available in this group
    capacity: np.ndarray  # GPUs per group pool
    class_unit: np.ndarray  # unit index (local) per class
    class_demand: np.ndarray
    cell_class: np.ndarray
    cell_pool: np.ndarray  # local pool index
    cell_speed: np.ndarray
    bound_rows: list[tuple[np.ndarray, float, float, str, int, int]] = field(default_factory=list)
    # (cells, lower, upper, kind 'limit'|'guarantee', node, type)

    @property
    def n_units(self) -> int:
        return len(self.units)

    def class_caps(self) -> np.ndarray:
        """An upper bound on each class's effective allocation: it greedily takes its fastest
        pools up to its demand, ignoring every other class."""
        caps = np.zeros(len(self.class_demand))
        order = np.lexsort((-self.cell_speed, self.cell_class))
        left = self.class_demand.copy()
        for k in order:
            c = self.cell_class[k]
            take = min(left[c], self.capacity[self.cell_pool[k]])
            if take > 0:
                caps[c] += take * self.cell_speed[k]
                left[c] -= take
        return caps

    def unit_caps(self) -> np.ndarray:
        """An upper bound on each unit's effective allocation (the sum of its classes')."""
        return np.bincount(self.class_unit, weights=self.class_caps(), minlength=self.n_units)


def children_units(problem: Problem) -> list[list[Unit]]:
    """For each node, its children: sub-nodes first, then requests, in file order."""
    kids: list[list[Unit]] = [[] for _ in range(problem.n_nodes)]
    for n in range(1, problem.n_nodes):
        kids[int(problem.node_parent[n])].append(Unit(True, n))
    for r in range(problem.n_requests):
        kids[int(problem.req_node[r])].append(Unit(False, r))
    return kids


def build_group(problem: Problem, parent: int, units: list[Unit], allotment: np.ndarray,
                demand: np.ndarray, floors: dict[tuple[int, int], float]) -> GroupModel:
    """The group of `parent` sharing `allotment` (GPUs per global pool)."""
    pools = np.flatnonzero(allotment > 1e-9)
    local = np.full(len(allotment), -1)
    local[pools] = np.arange(len(pools))
    pr = problem
    bounded_nodes = {n for n, _, _ in pr.limits} | {n for n, _, _ in pr.guarantees}

    keys: dict[tuple, int] = {}
    class_unit: list[int] = []
    class_demand: list[float] = []
    class_cells: list[tuple[np.ndarray, np.ndarray]] = []
    class_region: list[tuple[int, ...]] = []
    cells_of = pr.cells_of_request
    regions: dict[tuple[int, int], tuple[int, ...]] = {}
    for ui, unit in enumerate(units):
        reqs = [unit.index] if not unit.is_node else np.flatnonzero(pr.in_subtree(unit.index)).tolist()
        for r in reqs:
            if demand[r] <= 0:
                continue
            cells = cells_of[r]
            lp_pools = local[pr.cell_pool[cells]]
            usable = lp_pools >= 0
            if not usable.any():
                continue
            lp_pools, speeds = lp_pools[usable], pr.cell_speed[cells][usable]
            team = int(pr.req_node[r])
            region = regions.get((team, ui))
            if region is None:
                floor_node = unit.index if unit.is_node else team + 1  # a request unit has no inner nodes
                region = regions[(team, ui)] = tuple(
                    n for n in pr.ancestors(team) if n in bounded_nodes and n >= floor_node)
            key = (ui, region, lp_pools.tobytes(), speeds.tobytes()) if unit.is_node else (ui, r)
            c = keys.get(key)
            if c is None:
                c = keys[key] = len(class_unit)
                class_unit.append(ui)
                class_demand.append(0.0)
                class_cells.append((lp_pools, speeds))
                class_region.append(region)
            class_demand[c] += float(demand[r])

    cell_class = np.concatenate([np.full(len(p), c) for c, (p, _) in enumerate(class_cells)]) if class_cells else np.zeros(0, int)
    cell_pool = np.concatenate([p for p, _ in class_cells]) if class_cells else np.zeros(0, int)
    cell_speed = np.concatenate([s for _, s in class_cells]) if class_cells else np.zeros(0)
    model = GroupModel(
        parent=parent, units=units,
        weights=np.array([pr.node_weight[u.index] if u.is_node else pr.req_weight[u.index] for u in units], float),
        pools=pools, capacity=allotment[pools], class_unit=np.array(class_unit, int),
        class_demand=np.array(class_demand),
        cell_class=cell_class.astype(int), cell_pool=cell_pool.astype(int), cell_speed=cell_speed,
    )
    cell_type = pr.pool_type[pools][model.cell_pool] if len(cell_pool) else np.zeros(0, int)
    region_has = [set(r) for r in class_region]
    for kind, items in (("limit", pr.limits), ("guarantee", [(n, g, floors.get((n, g), 0.0)) for n, g, _ in pr.guarantees])):
        for node, gpu, value in items:
            if not (parent <= node < pr.subtree_end[parent]):
                continue
            if node == parent:
                mask = cell_type == gpu
            else:
                member = np.array([node in region_has[c] for c in range(len(class_unit))], bool)
                mask = (member[model.cell_class] if len(member) else np.zeros(0, bool)) & (cell_type == gpu)
            cells = np.flatnonzero(mask)
            if kind == "limit":
                model.bound_rows.append((cells, -INF, value, kind, node, gpu))
            elif value > 0:
                model.bound_rows.append((cells, value, INF, kind, node, gpu))
    return model


class GroupLP:
    """The LP of a group: x per cell and the level t.  Each unit has one row,
    sum of speed * x over its cells - c * t >= lo: with c = a_u it is the unit's level row
    (lo = 0); with c = 0 it holds the unit at a floor lo (frozen, or at its cap)."""

    def __init__(self, m: GroupModel, coeff: np.ndarray):
        n_cells, n_units, n_classes, n_pools = len(m.cell_class), m.n_units, len(m.class_demand), len(m.pools)
        self.model, self.coeff = m, coeff
        self.n_cells, self.col_t = n_cells, n_cells
        cells = np.arange(n_cells)
        r_dem = n_pools
        r_b = r_dem + n_classes
        r_u = r_b + len(m.bound_rows)
        self.row_unit = r_u
        cell_unit = m.class_unit[m.cell_class]
        rows = [m.cell_pool, r_dem + m.cell_class, r_u + cell_unit]
        cols = [cells, cells, cells]
        vals = [np.ones(n_cells), np.ones(n_cells), m.cell_speed]
        for i, (bc, *_rest) in enumerate(m.bound_rows):
            rows.append(np.full(len(bc), r_b + i))
            cols.append(bc)
            vals.append(np.ones(len(bc)))
        n_rows = r_u + n_units
        a = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n_rows, n_cells + 1))
        row_lo = np.full(n_rows, -INF)
        row_up = np.full(n_rows, INF)
        row_up[:n_pools] = m.capacity
        row_up[r_dem:r_b] = m.class_demand
        for i, (_, lo, up, *_rest) in enumerate(m.bound_rows):
            row_lo[r_b + i], row_up[r_b + i] = lo, up
        col_lo = np.zeros(n_cells + 1)
        col_up = np.full(n_cells + 1, INF)
        col_up[:n_cells] = np.minimum(m.capacity[m.cell_pool], m.class_demand[m.cell_class])
        cost = np.zeros(n_cells + 1)
        cost[n_cells] = 1.0
        self.lp = LP(a, cost, col_lo, col_up, row_lo, row_up)
        self.effective = sp.csr_matrix((m.cell_speed, (cell_unit, cells)), shape=(n_units, n_cells))
        self._tcoef = np.zeros(n_units)  # the t coefficient each unit row has now

    # -- reading a solution ------------------------------------------------------------------
    def x(self, values: np.ndarray) -> np.ndarray:
        return np.clip(values[: self.n_cells], 0.0, None)

    def e(self, values: np.ndarray) -> np.ndarray:
        """Effective allocation per unit."""
        return self.effective @ self.x(values)

    def t(self, values: np.ndarray) -> float:
        return float(values[self.col_t])

    # -- switching unit rows ---------------------------------------------------------------
    def _set_tcoef(self, units: np.ndarray, coef: np.ndarray) -> None:
        for u, c in zip(units.tolist(), coef.tolist()):
            if self._tcoef[u] != c:
                self.lp.h.changeCoeff(self.row_unit + u, self.col_t, -c)
                self._tcoef[u] = c

    def level(self, units: np.ndarray) -> None:
        """Units on their level row: e_u >= a_u * t."""
        units = np.asarray(units, dtype=int)
        self._set_tcoef(units, self.coeff[units])
        self.lp.set_row_bounds(self.row_unit + units, np.zeros(len(units)), np.full(len(units), INF))

    def floor(self, units: np.ndarray, lower: np.ndarray | list[float]) -> None:
        """Units held at e_u >= lower, whatever t is."""
        units = np.asarray(units, dtype=int)
        self._set_tcoef(units, np.zeros(len(units)))
        self.lp.set_row_bounds(self.row_unit + units, np.asarray(lower, float), np.full(len(units), INF))

    def t_free(self) -> None:
        self.lp.set_col_bounds([self.col_t], [0.0], [INF])

    def t_zero(self) -> None:
        self.lp.set_col_bounds([self.col_t], [0.0], [0.0])

    def maximise_placement(self) -> None:
        """Objective: as many GPUs as possible; then, among placements that do so, the most
        throughput relative to each class's potential, which favours small and narrow classes
        (a sub-node's allotment is what its children will share: this leaves a team's small,
        site-bound request the GPUs it can use rather than giving them to a big flexible one)."""
        caps = self.model.class_caps()
        potential = np.maximum(caps[self.model.cell_class], 1e-9)
        cost = np.zeros(self.n_cells + 1)
        cost[: self.n_cells] = 1.0 + 1e-3 * self.model.cell_speed / potential
        self.lp.set_cost(cost)
        self.t_zero()


def flat_model(problem: Problem, demand: np.ndarray, floors: dict[tuple[int, int], float]) -> GroupModel:
    """Every request as its own unit over the whole cluster, with every limit and guarantee:
    for the final work-conserving pass and for checking guarantees."""
    pr = problem
    cap = pr.pool_cap
    keep = (demand[pr.cell_req] > 0) & (cap[pr.cell_pool] > 0)
    cells = np.flatnonzero(keep)
    reqs = np.unique(pr.cell_req[cells])
    local_req = np.full(pr.n_requests, -1)
    local_req[reqs] = np.arange(len(reqs))
    model = GroupModel(
        parent=0, units=[Unit(False, int(r)) for r in reqs], weights=pr.req_weight[reqs],
        pools=np.arange(len(cap)), capacity=cap.astype(float), class_unit=np.arange(len(reqs)),
        class_demand=demand[reqs].astype(float),
        cell_class=local_req[pr.cell_req[cells]], cell_pool=pr.cell_pool[cells], cell_speed=pr.cell_speed[cells],
    )
    for node, gpu, value in pr.limits:
        sel = np.flatnonzero(pr.subtree_type_cells(node, gpu)[cells])
        model.bound_rows.append((sel, -INF, value, "limit", node, gpu))
    for node, gpu, _ in pr.guarantees:
        value = floors.get((node, gpu), 0.0)
        if value > 0:
            sel = np.flatnonzero(pr.subtree_type_cells(node, gpu)[cells])
            model.bound_rows.append((sel, value, INF, "guarantee", node, gpu))
    model.global_cells = cells  # type: ignore[attr-defined]
    return model
