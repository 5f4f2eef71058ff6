"""One sibling group as an LP: a node's children sharing the node's allotment.

A node's allotment is a number of GPUs per pool (decided at its parent's level).  Its
children (sub-nodes and requests hanging on it) are the *units* of the group.  A sub-node's
requests enter as *classes*: requests of the same unit with the same usable pools, speeds
and limit/guarantee region are merged (their sum of demand), which is exact for the unit's
effective throughput and keeps the upper levels' LPs small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from fairshare.engine._crash import crash_basis
from fairshare.engine._highs import INF, IPM_MIN_COLS, LP
from fairshare.engine._problem import Problem


class Unit(NamedTuple):
    """A child in the tree: a sub-node or a request hanging on a node."""

    is_node: bool
    index: int  # type: ignore[assignment]  # the node's or request's number; shadows tuple.index, unused


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
    # (cells, lower, upper, kind 'limit'|'guarantee'|'value', node, type); a 'value' row holds a
    # node's effective total (speed x GPUs over its cells), the others count GPUs

    @property
    def n_units(self) -> int:
        return len(self.units)

    @cached_property
    def class_caps(self) -> np.ndarray:
        """An upper bound on each class's effective allocation: it greedily takes its fastest
        pools up to its demand, ignoring every other class.  Computed once per model (the
        water-filling and the polish both ask; a model does not change once built)."""
        caps = np.zeros(len(self.class_demand))
        if not len(self.cell_class):
            return caps
        order = np.lexsort((-self.cell_speed, self.cell_class))
        cls = self.cell_class[order]
        starts = np.flatnonzero(np.r_[True, cls[1:] != cls[:-1]])
        pos = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        left = self.class_demand.astype(float).copy()
        room = self.capacity[self.cell_pool]
        for j in range(int(pos.max()) + 1):  # each class's j-th fastest cell, all classes at once
            k = order[pos == j]
            c = self.cell_class[k]
            take = np.minimum(left[c], room[k])
            take = np.where(take > 0, take, 0.0)
            caps[c] += take * self.cell_speed[k]
            left[c] -= take
        return caps

    @cached_property
    def cell_upper(self) -> np.ndarray:
        """The most GPUs a cell can hold: its pool's capacity, or its class's demand."""
        return np.minimum(self.capacity[self.cell_pool], self.class_demand[self.cell_class])

    def unit_caps(self) -> np.ndarray:
        """An upper bound on each unit's effective allocation (the sum of its classes')."""
        return np.bincount(self.class_unit, weights=self.class_caps, minlength=self.n_units)


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of `rows`: each one's first index, and each row's distinct row, as
    np.unique(rows, axis=0, return_index=True, return_inverse=True) gives them (rows compared
    by value), several times faster (a lexsort instead of sorting a structured dtype)."""
    order = np.lexsort(rows.T[::-1])  # stable: a distinct row's first index comes first
    ordered = rows[order]
    new = np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)]
    inverse = np.empty(len(rows), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return order[new], inverse


def request_classes(
    req_unit: np.ndarray, region_id: np.ndarray, node_rows: np.ndarray, speeds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Requests that an LP may treat as one column: under the same unit, in the same region, with
    the same speeds, when their unit is a node (a team's requests are each their own class).
    Returns each request's class and each class's first request, classes in order of first request."""
    n = len(req_unit)
    if n and not node_rows.any():  # requests only: each its own class
        own = np.arange(n)
        return own, own
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    key_rows = np.column_stack(
        [req_unit.astype(float), region_id.astype(float), np.where(node_rows, 0.0, np.arange(n, dtype=float)), speeds]
    )
    first, inverse = _unique_rows(key_rows)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[inverse], first[order]


def unit_weights(pr: Problem, unit_index: np.ndarray, unit_is_node: np.ndarray) -> np.ndarray:
    """Each unit's weight: its node's, or its request's."""
    weights = np.empty(len(unit_index), dtype=float)
    weights[unit_is_node] = np.asarray(pr.node_weight, float)[unit_index[unit_is_node]]
    weights[~unit_is_node] = np.asarray(pr.req_weight, float)[unit_index[~unit_is_node]]
    return weights


def children_units(problem: Problem) -> list[list[Unit]]:
    """For each node, its children: sub-nodes first, then requests, in file order."""
    kids: list[list[Unit]] = [[] for _ in range(problem.n_nodes)]
    for n, parent in enumerate(problem.node_parent.tolist()):
        if n:
            kids[parent].append(Unit(True, n))
    for r, node in enumerate(problem.req_node.tolist()):
        kids[node].append(Unit(False, r))
    return kids


def build_group(
    problem: Problem,
    parent: int,
    units: list[Unit],
    allotment: np.ndarray,
    demand: np.ndarray,
    floors: dict[tuple[int, int], float],
    inherited: Sequence[tuple[int, int, float]] = (),
) -> GroupModel:
    """The group of `parent` sharing `allotment` (GPUs per global pool).  `inherited`: the parts
    of ancestors' guarantee floors this group's requests must use, (ancestor, type, GPUs): a row
    on every cell of that type in the group (engine/_hierarchy.py hands them down)."""
    pools = np.flatnonzero(allotment > 1e-9)
    pr = problem
    bounded_nodes = {n for n, _, _ in pr.limits} | {n for n, _, _ in pr.guarantees}

    # the requests of each unit, in order (a sub-node's: its subtree's, by request index)
    unit_index = np.array([u.index for u in units], dtype=np.int64)
    unit_is_node = np.array([u.is_node for u in units], dtype=bool)
    if not unit_is_node.any():  # requests only (a team's group): each unit is one request
        req, counts = unit_index, np.ones(len(units), dtype=np.int64)
    else:
        unit_reqs = [pr.subtree_requests(u.index) if u.is_node else np.array([u.index]) for u in units]
        counts = np.array([len(r) for r in unit_reqs], dtype=np.int64)
        req = np.concatenate(unit_reqs).astype(np.int64)
    req_unit = np.repeat(np.arange(len(units), dtype=np.int64), counts)
    speeds = pr.speed_matrix[req][:, pools]  # speed of each request on each group pool (0: cannot use)
    keep = (demand[req] > 0) & (speeds > 0).any(axis=1)
    req, req_unit, speeds = req[keep], req_unit[keep], speeds[keep]

    # classes: a request unit is its own class; a sub-node's requests with the same region and
    # the same speed on every pool are one class (numbered by first appearance)
    region_id = np.zeros(len(req), dtype=np.int64)
    region_list: list[tuple[int, ...]] = [()]
    if bounded_nodes:
        region_index: dict[tuple[int, ...], int] = {(): 0}
        team = pr.req_node[req]
        cache: dict[tuple[int, int], int] = {}
        for i in np.flatnonzero(unit_is_node[req_unit]):
            key = (int(team[i]), int(req_unit[i]))
            rid = cache.get(key)
            if rid is None:
                floor_node = units[key[1]].index
                region = tuple(n for n in pr.ancestors(key[0]) if n in bounded_nodes and n >= floor_node)
                rid = cache[key] = region_index.setdefault(region, len(region_index))
                if rid == len(region_list):
                    region_list.append(region)
            region_id[i] = rid
    req_class, class_first = request_classes(req_unit, region_id, unit_is_node[req_unit], speeds)
    n_classes = len(class_first)
    class_unit = req_unit[class_first]
    class_demand = np.bincount(req_class, weights=demand[req], minlength=n_classes).astype(float)
    class_region = [region_list[r] for r in region_id[class_first].tolist()]
    first_speeds = speeds[class_first]
    cls, lp_pool = np.nonzero(first_speeds > 0)  # row-major: by class, then by pool
    model = GroupModel(
        parent=parent,
        units=units,
        weights=unit_weights(pr, unit_index, unit_is_node),
        pools=pools,
        capacity=allotment[pools],
        class_unit=class_unit.astype(int),
        class_demand=class_demand,
        cell_class=cls.astype(int),
        cell_pool=lp_pool.astype(int),
        cell_speed=first_speeds[cls, lp_pool],
    )
    class_unit = class_unit.tolist()
    cell_type = pr.pool_type[pools][model.cell_pool] if len(model.cell_pool) else np.zeros(0, int)
    region_has = [set(r) for r in class_region] if pr.limits or pr.guarantees else []
    held = [(n, g, floors.get((n, g), 0.0)) for n, g, _ in pr.guarantees]
    for kind, items in (("limit", pr.limits), ("guarantee", held)):
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
    for node, gpu, value in inherited:
        if value > 0:
            model.bound_rows.append((np.flatnonzero(cell_type == gpu), value, INF, "guarantee", node, gpu))
    return model


class GroupLP:
    """The LP of a group: x per cell and the level t.  Each unit has one row,
    sum of speed * x over its cells - c * t >= lo: with c = a_u it is the unit's level row
    (lo = 0); with c = 0 it holds the unit at a floor lo (frozen, or at its cap).

    A large flat group (the one whose first solve starts from a crash basis) has two rows per
    unit instead: its level row, with a_u on t once and for all, and its floor row, without t;
    the one not in use has no lower bound.  Holding a unit at its cap or freezing it then only
    changes row bounds: a change to the matrix (the t coefficient) makes HiGHS compute its dual
    steepest-edge weights again from scratch, one BTRAN per row, which took most of a second
    per re-solve at 8,192 requests (bench_gavel.py's capped family)."""

    def __init__(self, m: GroupModel, coeff: np.ndarray):
        n_cells, n_units, n_classes, n_pools = len(m.cell_class), m.n_units, len(m.class_demand), len(m.pools)
        self.model, self.coeff = m, coeff
        self.n_cells, self.col_t = n_cells, n_cells
        cells = np.arange(n_cells)
        r_dem = n_pools
        r_b = r_dem + n_classes
        r_u = r_b + len(m.bound_rows)
        self.row_unit = r_u
        self.row_bound = r_b
        cell_unit = m.class_unit[m.cell_class]
        self.cell_unit = cell_unit
        flat = not m.bound_rows and np.array_equal(m.class_unit, np.arange(n_units))
        self.split = n_cells >= IPM_MIN_COLS and flat
        self.row_floor = r_u + n_units if self.split else r_u  # the floor rows (split) or the unit rows
        n_rows = r_u + n_units * (2 if self.split else 1)
        if self.split:
            # each cell's column: its pool row, its class's demand row, its unit's level and floor rows;
            # t's column: -a_u on every level row
            index = np.empty((n_cells, 4), dtype=np.int32)
            index[:, 0] = m.cell_pool
            index[:, 1] = r_dem + m.cell_class
            index[:, 2] = r_u + cell_unit
            index[:, 3] = r_u + n_units + cell_unit
            value = np.empty((n_cells, 4))
            value[:, 0] = 1.0
            value[:, 1] = 1.0
            value[:, 2] = m.cell_speed
            value[:, 3] = m.cell_speed
            t_rows = np.flatnonzero(coeff != 0)
            start = np.r_[np.arange(0, 4 * n_cells + 1, 4), 4 * n_cells + len(t_rows)].astype(np.int32)
            a = sp.csc_matrix(
                (
                    np.r_[value.reshape(-1), -coeff[t_rows]],
                    np.r_[index.reshape(-1), r_u + t_rows].astype(np.int32),
                    start,
                ),
                shape=(n_rows, n_cells + 1),
            )
        elif not m.bound_rows:
            # each cell's column: its pool row, its class's demand row, its unit's row (ascending)
            index = np.empty((n_cells, 3), dtype=np.int32)
            index[:, 0] = m.cell_pool
            index[:, 1] = r_dem + m.cell_class
            index[:, 2] = r_u + cell_unit
            value = np.empty((n_cells, 3))
            value[:, 0] = 1.0
            value[:, 1] = 1.0
            value[:, 2] = m.cell_speed
            start = np.arange(0, 3 * n_cells + 1, 3, dtype=np.int32)
            a = sp.csc_matrix(
                (value.reshape(-1), index.reshape(-1), np.r_[start, start[-1]]), shape=(n_rows, n_cells + 1)
            )
        else:
            rows = [m.cell_pool, r_dem + m.cell_class, r_u + cell_unit]
            cols = [cells, cells, cells]
            vals = [np.ones(n_cells), np.ones(n_cells), m.cell_speed]
            for i, (bc, _lo, _up, kind, *_tail) in enumerate(m.bound_rows):
                rows.append(np.full(len(bc), r_b + i))
                cols.append(bc)
                # a node's value row counts effective GPUs; limits and guarantees count GPUs
                vals.append(m.cell_speed[bc] if kind == "value" else np.ones(len(bc)))
            a = sp.csc_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_rows, n_cells + 1)
            )
        row_lo = np.full(n_rows, -INF)
        row_up = np.full(n_rows, INF)
        row_up[:n_pools] = m.capacity
        row_up[r_dem:r_b] = m.class_demand
        for i, (_, lo, up, *_rest) in enumerate(m.bound_rows):
            row_lo[r_b + i], row_up[r_b + i] = lo, up
        col_lo = np.zeros(n_cells + 1)
        col_up = np.full(n_cells + 1, INF)
        col_up[:n_cells] = m.cell_upper
        cost = np.zeros(n_cells + 1)
        cost[n_cells] = 1.0
        self.lp = LP(a, cost, col_lo, col_up, row_lo, row_up)
        if self.split:  # its warm re-solves change a few row bounds each
            self.lp.prefer_devex()
        if n_cells >= IPM_MIN_COLS and flat:
            self.lp.crash = lambda: crash_basis(self)  # a large flat group: start from a crash basis
        self.n_units = n_units
        # the crash's prices and level: where its next plan starts (None: from a sample), and
        # where its last one ended (y, t, whether the level stopped at a unit's cap with no pool
        # binding, and each unit row's dual when it found a basis), for the cap search's probes
        # (engine/_waterfill.py); None: no plan
        self.prices: tuple[np.ndarray, float] | None = None
        self.crash_end: tuple[np.ndarray, float, bool, np.ndarray | None] | None = None
        self._tcoef = np.zeros(n_units)  # the t coefficient each unit row has now
        self._lower = np.full(n_units, -INF)  # and its lower bound
        self._t_upper = INF  # t's upper bound (its lower bound is 0)

    # -- reading a solution ------------------------------------------------------------------
    def x(self, values: np.ndarray) -> np.ndarray:
        return np.clip(values[: self.n_cells], 0.0, None)

    def e(self, values: np.ndarray) -> np.ndarray:
        """Effective allocation per unit."""
        return np.bincount(self.cell_unit, weights=self.model.cell_speed * self.x(values), minlength=self.n_units)

    def t(self, values: np.ndarray) -> float:
        return float(values[self.col_t])

    # -- the unit rows as they are now (read-only views, for engine/crash.py) ---------------
    @property
    def unit_t_coef(self) -> np.ndarray:
        """Each unit row's coefficient of t: a_u on its level row, 0 when held at a floor."""
        return _read_only(self._tcoef)

    @property
    def unit_lower(self) -> np.ndarray:
        """Each unit row's lower bound: 0 on its level row, the floor when held."""
        return _read_only(self._lower)

    @property
    def t_is_free(self) -> bool:
        """Can t rise (False once every unit is held and t is fixed at 0)?"""
        return self._t_upper == INF

    # -- switching unit rows ---------------------------------------------------------------
    def unit_duals(self, duals: np.ndarray, units: np.ndarray) -> np.ndarray:
        """The dual of each unit's row in use (its level row, or its floor row when held)."""
        if not self.split:
            return duals[self.row_unit + units]
        return np.where(self._tcoef[units] > 0, duals[self.row_unit + units], duals[self.row_floor + units])

    def set_rows(self, units: np.ndarray, coef: np.ndarray, lower: np.ndarray) -> None:
        """Unit rows e_u - coef * t >= lower; only the rows that change are sent to HiGHS
        (called before every solve of the cap search, so it does as few array passes as it can).
        coef is a_u (the unit's level row) or 0 (held at `lower`)."""
        if self.split:
            self._set_split_rows(units, coef, lower)
            return
        recoef = self._tcoef[units] != coef
        if recoef.any():
            moved = units[recoef]
            self.lp.change_coeffs(self.row_unit + moved, self.col_t, -coef[recoef])
            self._tcoef[moved] = coef[recoef]
        rebound = self._lower[units] != lower
        if rebound.any():
            moved, lower = units[rebound], lower[rebound]
            self.lp.set_row_bounds(self.row_unit + moved, lower, np.full(len(moved), INF))
            self._lower[moved] = lower

    def _set_split_rows(self, units: np.ndarray, coef: np.ndarray, lower: np.ndarray) -> None:
        """set_rows with two rows per unit: only row bounds change."""
        moved = (self._tcoef[units] != coef) | (self._lower[units] != lower)
        if not moved.any():
            return
        units, coef, lower = units[moved], coef[moved], lower[moved]
        on_level = coef > 0
        n = len(units)
        self.lp.set_row_bounds(
            np.r_[self.row_unit + units, self.row_floor + units],
            np.r_[np.where(on_level, lower, -INF), np.where(on_level, -INF, lower)],
            np.full(2 * n, INF),
        )
        self._tcoef[units] = coef
        self._lower[units] = lower

    def level(self, units: np.ndarray) -> None:
        """Units on their level row: e_u >= a_u * t."""
        units = np.asarray(units, dtype=int)
        self.set_rows(units, self.coeff[units], np.zeros(len(units)))

    def floor(self, units: np.ndarray, lower: np.ndarray | list[float]) -> None:
        """Units held at e_u >= lower, whatever t is."""
        units = np.asarray(units, dtype=int)
        self.set_rows(units, np.zeros(len(units)), np.asarray(lower, float).reshape(-1))

    def loosen_guarantees(self, absolute: float, relative: float) -> None:
        """Every guarantee row's floor lowered by `absolute` + `relative` x floor.  The parent's
        LP held the same floor only to its tolerances, so this group's allotment may fall short
        of it by as much (2e-9 GPUs has made the group infeasible)."""
        rows = [i for i, row in enumerate(self.model.bound_rows) if row[3] in ("guarantee", "value")]
        if rows:
            floors = np.array([self.model.bound_rows[i][1] for i in rows], dtype=float)
            uppers = np.array([self.model.bound_rows[i][2] for i in rows], dtype=float)
            uppers = np.where(np.isinf(uppers), INF, uppers + absolute + relative * np.abs(uppers))
            self.lp.set_row_bounds(self.row_bound + np.array(rows), loosened(floors, absolute, relative), uppers)

    def prefer_primal(self) -> None:
        """Re-solve with primal simplex, without bound perturbation and without scaling.  For
        groups of requests (many small LPs that differ in a few unit rows) that takes about a
        third less time than dual simplex, and unscaled about a fifth less again: every
        change to the level column would otherwise re-scale the model.  Every solve is still
        an exact LP optimum; if HiGHS ever stops short of one, LP.run retries scaled."""
        self.lp.h.setOptionValue("simplex_strategy", 4)
        self.lp.h.setOptionValue("primal_simplex_bound_perturbation_multiplier", 0.0)
        self.lp.h.setOptionValue("simplex_scale_strategy", 0)

    def t_free(self) -> None:
        if self._t_upper != INF:
            self.lp.set_col_bounds([self.col_t], [0.0], [INF])
            self._t_upper = INF

    def t_zero(self) -> None:
        if self._t_upper != 0.0:
            self.lp.set_col_bounds([self.col_t], [0.0], [0.0])
            self._t_upper = 0.0

    def maximise_placement(self) -> None:
        """Objective: as many GPUs as possible; then, among placements that do so, the most
        throughput relative to each class's potential, which favours small and narrow classes
        (a sub-node's allotment is what its children will share: this leaves a team's small,
        site-bound request the GPUs it can use rather than giving them to a big flexible one)."""
        caps = self.model.class_caps
        potential = np.maximum(caps[self.model.cell_class], 1e-9)
        cost = np.zeros(self.n_cells + 1)
        cost[: self.n_cells] = 1.0 + 1e-3 * self.model.cell_speed / potential
        self.lp.set_cost(cost)
        self.t_zero()


def loosened(v: np.ndarray, absolute: float, relative: float) -> np.ndarray:
    """`v` lowered by `absolute` + `relative` x |v|, not below 0."""
    return np.maximum(0.0, v - absolute - relative * np.abs(v))


def _read_only(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


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
        parent=0,
        units=[Unit(False, int(r)) for r in reqs],
        weights=pr.req_weight[reqs],
        pools=np.arange(len(cap)),
        capacity=cap.astype(float),
        class_unit=np.arange(len(reqs)),
        class_demand=demand[reqs].astype(float),
        cell_class=local_req[pr.cell_req[cells]],
        cell_pool=pr.cell_pool[cells],
        cell_speed=pr.cell_speed[cells],
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
