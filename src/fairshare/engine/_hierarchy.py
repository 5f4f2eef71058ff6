"""Top-down: the root's group shares the cluster, each node's group shares its allotment.

A node's allotment is the GPUs per pool its subtree received at its parent's level; its
children then share exactly those GPUs.  After all groups, one pass hands any GPU still
idle to requests that can use it (what a subtree cannot use goes back up the tree), keeping
everyone at or above their fair value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from fairshare.engine._group import GroupLP, GroupModel, Unit, build_group, children_units, flat_model, unit_weights
from fairshare.engine._groupcache import GroupCache
from fairshare.engine._highs import IPM_MIN_COLS
from fairshare.engine._problem import Problem
from fairshare.engine._sharing import SurplusBases
from fairshare.engine._waterfill import GroupInfeasible, GroupResult, UnitFreeze, water_fill_group


@dataclass
class UnitOutcome:
    parent: int
    weight: float
    share: float  # weight / sum of siblings' weights
    freeze: UnitFreeze


@dataclass
class FillResult:
    x: np.ndarray  # per global cell (exact, fractional GPUs)
    outcomes: dict[Unit, UnitOutcome]
    allotments: dict[int, np.ndarray]  # node -> GPUs per pool
    lp_solves: int
    levels: int
    groups: int
    leftover_pass: bool


def cell_index(problem: Problem) -> np.ndarray:
    """cell_of[r, p]: the cell of request r on pool p (-1: none)."""
    cell_of = np.full((problem.n_requests, len(problem.pool_cap)), -1, dtype=np.int64)
    cell_of[problem.cell_req, problem.cell_pool] = np.arange(problem.n_cells)
    return cell_of


T = TypeVar("T")
LEFTOVER_ROUNDS = 3
LEFTOVER_MIN = 1e-4  # GPUs; slivers below this are solver noise, not capacity


def fill(
    problem: Problem,
    demand: np.ndarray,
    floors: dict[tuple[int, int], float],
    threads: int | None = None,
    cache: GroupCache | None = None,
) -> FillResult:
    """Water-fill every sibling group, top-down; then share what no subtree could use.

    A subtree may be unable to use part of its allotment (its requests reach their demand on
    faster pools).  Those GPUs go back up: another top-down pass shares the idle capacity among
    the requests that still want GPUs, by the same weights (what one child cannot use goes to
    its siblings first, then up the tree).  After a few such rounds anything still idle is
    placed wherever it can be used.  `cache` answers groups of requests seen before
    (engine/_groupcache.py, for engine/shares.py, which reads numbers only: with a cache the
    result has no outcomes, so nothing can be explained from it)."""
    workers = threads or os.cpu_count() or 1
    kids = children_units(problem)  # the tree is the same in every round
    with ThreadPoolExecutor(max_workers=workers) if workers > 1 else _Inline() as pool:
        # a caller with a cache reads numbers only: no outcomes (they are what explanations read)
        x, outcomes, allot, solves, levels, groups = _top_down(
            problem, demand, floors, pool, kids, keep_outcomes=cache is None, cache=cache
        )
        rounds = 0
        while rounds < LEFTOVER_ROUNDS and has_usable_idle(problem, x, demand, LEFTOVER_MIN):
            rounds += 1
            rest_problem, rest_demand = _leftover_problem(problem, x, demand)
            extra, _, _, s2, l2, g2 = _top_down(
                rest_problem, rest_demand, {}, pool, kids, keep_outcomes=False, cache=cache
            )
            x = x + extra
            solves, levels, groups = solves + s2, levels + l2, groups + g2
    leftover = has_usable_idle(problem, x, demand)
    if leftover:
        x = leftover_pass(problem, x, demand)
        solves += 1
    return FillResult(x, outcomes, allot, solves, levels, groups, leftover or rounds > 0)


def root_allotments(
    problem: Problem, demand: np.ndarray, below: Collection[int] = (), cache: GroupCache | None = None
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Each node's GPUs per pool from the root's group, and the requests' cells of the groups of
    the nodes `below` (the first step of `fill` for those; no other group, no leftover pass):
    for engine/shares.py, which knows when the other groups cannot change a team's totals."""
    x, _, allot, _, _, _ = _top_down(problem, demand, {}, _Inline(), keep_outcomes=False, cache=cache, below=below)
    return allot, x


class _Inline:
    """An executor that runs each task when submitted, on the calling thread: for threads=1
    (small problems solved many times, where starting a thread costs more than a group)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # delivered by future.result(), as the pool does
            future.set_exception(e)
        return future


def _top_down(
    problem: Problem,
    demand: np.ndarray,
    floors: dict[tuple[int, int], float],
    pool: ThreadPoolExecutor | _Inline,
    kids: list[list[Unit]] | None = None,
    keep_outcomes: bool = True,
    cache: GroupCache | None = None,
    below: Collection[int] | None = None,
) -> tuple[np.ndarray, dict[Unit, UnitOutcome], dict[int, np.ndarray], int, int, int]:
    """One pass from the root down.  A group shares only its own parent's allotment, so it
    is solved on the thread pool as soon as its parent's group is done (HiGHS releases the
    GIL while it solves), with no wait for the rest of the parent's depth.  Each group writes
    only its own sub-nodes' allotments and its own requests' cells, and outcomes are merged
    in tree order (by depth, then node), so the result does not depend on timing; of several
    infeasible groups, the first in that order is reported.  `below`: the only nodes whose
    groups are solved besides the root's (None: every node's; the others keep their allotments)."""
    if kids is None:
        kids = children_units(problem)
    cell_of = cell_index(problem)
    x = np.zeros(problem.n_cells)
    n_pools = len(problem.pool_cap)
    allot: dict[int, np.ndarray] = {n: np.zeros(n_pools) for n in range(problem.n_nodes)}
    allot[0] = problem.pool_cap.astype(float).copy()
    done: dict[int, tuple[GroupModel, np.ndarray, np.ndarray, GroupResult]] = {}
    failed: dict[int, BaseException] = {}
    bases = SurplusBases.of(problem, floors) if problem.surplus and floors else None
    inherited: dict[int, list[tuple[int, int, float]]] = {}  # node -> its part of ancestors' floors

    def solve_group(parent: int) -> tuple[GroupModel, np.ndarray, np.ndarray, GroupResult]:
        """The group of `parent`, without the requests that want no GPU (after the first pass,
        most of them): they would only add empty rows.  Shares are still of all siblings'
        weights (returned too, for the outcomes), so the LP and its levels are the same."""
        units = kids[parent]
        live = [u for u in units if u.is_node or demand[u.index] > 0]
        model = build_group(problem, parent, live, allot[parent], demand, floors, inherited.get(parent, ()))
        weights = _child_weights(problem, units)
        coeff = model.weights / weights.sum()
        potential = np.zeros(len(live), bool)
        potential[model.class_unit] = True
        team = _team_group(model, len(units))
        offset = bases.offsets(model) if bases is not None and any(u.is_node for u in live) else None

        def water_fill() -> GroupResult:
            g = GroupLP(model, coeff)
            if team:
                g.prefer_primal()
                return water_fill_group(g, coeff, potential, ratio=TEAM_RATIO, offset=offset)
            # a large group of requests only (a flat lab's root): after the first step, many caps
            # change at once; primal simplex from above re-solves those in a fraction of the time
            # (bench_gavel.py's capped family: 8,192 jobs hit HiGHS' 120 s limit with dual galloping)
            flat = len(model.cell_class) >= IPM_MIN_COLS and not any(u.is_node for u in model.units)
            return water_fill_group(
                g, coeff, potential, ratio=TEAM_RATIO if flat else None, primal_after_first=flat, offset=offset
            )

        if cache is not None and offset is None and not model.bound_rows:  # the same model: the same result
            flags = (team, tuple(u.is_node for u in live))
            return model, weights, coeff, cache.result(model, coeff, potential, flags, water_fill)
        return model, weights, coeff, water_fill()

    def ready(node: int) -> bool:
        return bool(kids[node]) and allot[node].sum() > 1e-9

    running: dict[Future, int] = {pool.submit(solve_group, 0): 0} if problem.n_nodes and ready(0) else {}
    while running:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            parent = running.pop(future)
            try:
                model, _, _, result = done[parent] = future.result()
            except GroupInfeasible as error:
                failed[parent] = error
                continue
            _distribute(problem, model, result.x, model.units, allot, x, cell_of)
            inherited.update(_hand_down_floors(problem, model, result.x, floors, inherited.get(parent, ())))
            for u in kids[parent]:
                if u.is_node and ready(u.index) and (below is None or u.index in below):
                    running[pool.submit(solve_group, u.index)] = u.index
    tree_order = sorted(done.keys() | failed.keys(), key=lambda n: (int(problem.node_depth[n]), n))
    for parent in tree_order:
        if parent in failed:
            raise failed[parent]
    outcomes: dict[Unit, UnitOutcome] = {}
    solves = levels = 0
    for parent in tree_order:
        model, weights, coeff, result = done[parent]
        solves += result.lp_solves
        levels += result.steps
        if keep_outcomes:
            outcomes.update(_outcomes(parent, kids[parent], weights, model, coeff, result))
    return x, outcomes, allot, solves, levels, len(done)


def _hand_down_floors(
    problem: Problem,
    m: GroupModel,
    xg: np.ndarray,
    floors: dict[tuple[int, int], float],
    inherited: Sequence[tuple[int, int, float]],
) -> dict[int, list[tuple[int, int, float]]]:
    """Each sub-node's part of the guarantee floors that bind this group as a whole (the
    parent's own and those it inherited): a guarantee binds what its subtree's requests *use*,
    so the GPUs of that type a sub-node got for it must be used below too, not only handed
    down.  A floor F of type g is split in proportion to the type-g GPUs each unit got here,
    F x U_c / sum U (the requests hanging on the parent keep theirs, which are final); that
    is feasible below, since the sub-node's classes used U_c in this group's solution."""
    binding = [(n, g, v) for (n, g), v in floors.items() if n == m.parent and v > 0]
    binding += [row for row in inherited if row[2] > 0]
    if not binding or not len(xg):
        return {}
    cell_unit = m.class_unit[m.cell_class]
    cell_type = problem.pool_type[m.pools[m.cell_pool]]
    nodes = [i for i, u in enumerate(m.units) if u.is_node]
    out: dict[int, list[tuple[int, int, float]]] = {m.units[i].index: [] for i in nodes}
    for node, gpu, value in binding:
        use = np.bincount(cell_unit, weights=np.where(cell_type == gpu, xg[: len(cell_unit)], 0.0), minlength=m.n_units)
        total = float(use.sum())
        if total <= 0:
            continue
        for i in nodes:
            part = value * min(1.0, float(use[i]) / total)
            if part > 1e-12:
                out[m.units[i].index].append((node, gpu, part))
    return {n: rows for n, rows in out.items() if rows}


def _child_weights(problem: Problem, units: list[Unit]) -> np.ndarray:
    """The weights of all of a node's children, those left out of its group's LP included."""
    return unit_weights(
        problem, np.array([u.index for u in units], dtype=np.int64), np.array([u.is_node for u in units], dtype=bool)
    )


def _outcomes(
    parent: int, units: list[Unit], weights: np.ndarray, model: GroupModel, coeff: np.ndarray, result: GroupResult
) -> dict[Unit, UnitOutcome]:
    """Every child's outcome, in the parent's child order (`weights`: every child's); a child
    left out of the group (it wanted no GPU) stopped at 0, at its cap."""
    total = weights.sum()
    solved = {u: i for i, u in enumerate(model.units)}
    out = {}
    for j, u in enumerate(units):
        i = solved.get(u)
        if i is None:
            out[u] = UnitOutcome(parent, float(weights[j]), float(weights[j] / total), UnitFreeze(0.0, 0.0, True, 0))
        else:
            out[u] = UnitOutcome(parent, float(model.weights[i]), float(coeff[i]), result.freezes[i])
    return out


TEAM_MIN_UNITS = 8
TEAM_RATIO = 1.5  # a step's first guess: the caps up to this x the last step's level


def _team_group(model: GroupModel, n_children: int) -> bool:
    """A team's requests (many of them, below the root, a small LP): the group takes many
    warm re-solves that differ in a few unit rows.  It solves them with primal simplex and
    searches caps from above, guessing by the last step's level (TEAM_RATIO), which take less
    time there.  A flat lab's single group, groups of sub-nodes and groups of a few requests
    keep dual simplex and the plain galloping (few LPs; the vertex they return stays as it was).
    n_children counts every child, including those left out of the LP for wanting no GPU."""
    return (
        model.parent != 0
        and n_children >= TEAM_MIN_UNITS
        and len(model.cell_class) < IPM_MIN_COLS
        and not any(u.is_node for u in model.units)
    )


def _leftover_problem(
    problem: Problem, x: np.ndarray, demand: np.ndarray, min_gpus: float = LEFTOVER_MIN
) -> tuple[Problem, np.ndarray]:
    """The same lab with only the idle GPUs, the demand still unmet, and what is left under
    each limit (amounts below min_gpus count as none)."""
    used = np.bincount(problem.cell_pool, weights=x, minlength=len(problem.pool_cap))
    got = np.bincount(problem.cell_req, weights=x, minlength=problem.n_requests)
    idle = np.maximum(problem.pool_cap - used, 0.0)
    idle[idle < min_gpus] = 0.0
    rest = np.maximum(demand - got, 0.0)
    rest[rest < min_gpus] = 0.0
    limits = [(n, g, max(0.0, cap - float(x[problem.subtree_type_cells(n, g)].sum()))) for n, g, cap in problem.limits]
    return replace(problem, pool_cap=idle, limits=limits), rest


def _distribute(
    problem: Problem,
    m: GroupModel,
    xg: np.ndarray,
    units: list[Unit],
    allot: dict[int, np.ndarray],
    x: np.ndarray,
    cell_of: np.ndarray,
) -> None:
    k = np.flatnonzero(xg > 0)
    if not len(k):
        return
    unit_index = np.array([u.index for u in units], dtype=np.int64)
    unit_is_node = np.array([u.is_node for u in units], dtype=bool)
    owner = m.class_unit[m.cell_class[k]]
    pool = m.pools[m.cell_pool[k]]
    is_node = unit_is_node[owner]
    for i in np.flatnonzero(is_node):  # few: a group has few sub-nodes, each with few pools
        allot[int(unit_index[owner[i]])][pool[i]] += xg[k[i]]
    req = ~is_node
    np.add.at(x, cell_of[unit_index[owner[req]], pool[req]], xg[k[req]])


def has_usable_idle(problem: Problem, x: np.ndarray, demand: np.ndarray, tol: float = 1e-6) -> bool:
    used = np.bincount(problem.cell_pool, weights=x, minlength=len(problem.pool_cap))
    got = np.bincount(problem.cell_req, weights=x, minlength=problem.n_requests)
    idle = problem.pool_cap - used > tol
    hungry = got < demand - tol
    return bool(np.any(idle[problem.cell_pool] & hungry[problem.cell_req]))


def leftover_pass(problem: Problem, x: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """Hand GPUs no group could use to requests that still want them (nobody loses any):
    an LP over the idle capacity only, most GPUs placed first, then the fastest placement."""
    rest_problem, rest = _leftover_problem(problem, x, demand, min_gpus=1e-6)
    model = flat_model(rest_problem, rest, {})
    cells = model.global_cells  # type: ignore[attr-defined]
    if not len(cells):
        return x
    g = GroupLP(model, np.zeros(model.n_units))
    g.maximise_placement()
    if not g.lp.run():
        raise GroupInfeasible(0)
    out = x.copy()
    out[cells] += g.x(g.lp.values())
    return out
