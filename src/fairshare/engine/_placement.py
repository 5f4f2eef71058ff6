"""Placement serves the requests below: a team whose share was placed where some of its own
requests cannot run has it placed again, with every other value held.

The top-down pass (engine/_hierarchy.py) hands each node its share per pool.  When a parent's
LP is indifferent (or nearly) between placements, it can put a team's share on pools one of
the team's requests cannot use, and that request starves while its siblings do well.  Values
are what the levels above decide, not pools: so for such a team, one LP over the whole lab
shares the team's value among its requests again (weighted max-min, as in its own group),
with every other request held at the effective GPUs it has, the team's own requests free to
move anywhere they may run, limits and guarantees on what the subtrees use, and the team's
effective total between (1 - placement_slack) x its value and its value: the team may give up
that much of its own throughput so that its members can run where they can, and no other
node pays anything.  With placement_slack 0 only placements that cost the team nothing are
taken (a swap with a team that can run elsewhere at the same speed).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fairshare.engine._group import GroupLP, Unit
from fairshare.engine._levels import level_model
from fairshare.engine._problem import Problem
from fairshare.engine._waterfill import margins, water_fill_group

TOL = 1e-6
STARVED = 1e-3  # a request below this x its best-off sibling's level (about 0) marks its team
MAX_CELLS = 3000  # a larger re-placement is skipped (its LP would cost seconds; docs/known-issues.md)
HOPS = 2  # how far a re-placement looks for requests that could make room (each hop: a pool swap)
RATIO = 1.5  # the cap search's first guess (as a team's group does)


@dataclass
class Replacement:
    """What placing teams' shares again changed."""

    x: np.ndarray
    slack_used: dict[int, float] = field(default_factory=dict)  # node -> effective GPUs it gave up
    value: dict[int, float] = field(default_factory=dict)  # node -> its value before (effective GPUs)
    lp_solves: int = 0
    teams: int = 0
    skipped: list[int] = field(default_factory=list)  # starved teams whose re-placement was too large


def starved_teams(pr: Problem, x: np.ndarray, demand: np.ndarray) -> list[int]:
    """Teams (nodes with requests hanging on them, not the root) where a request that still
    wants GPUs is (about) at 0, below STARVED x the level of its best-off sibling: the sign that the team's share
    was placed where that request cannot run."""
    got = np.bincount(pr.cell_req, weights=x, minlength=pr.n_requests)
    e = np.bincount(pr.cell_req, weights=x * pr.cell_speed, minlength=pr.n_requests)
    has_cells = np.zeros(pr.n_requests, bool)
    has_cells[pr.cell_req] = True
    level = e / pr.req_weight
    best = np.zeros(pr.n_nodes)
    np.maximum.at(best, pr.req_node, level)
    starved = (demand > 0) & (got < demand - 1e-4) & has_cells & (level <= STARVED * best[pr.req_node])
    return [n for n in np.unique(pr.req_node[starved]).tolist() if n != 0 and best[n] > 1e-4]


def _neighbourhood(pr: Problem, x: np.ndarray, team_reqs: np.ndarray, hops: int) -> np.ndarray:
    """The requests a re-placement for `team_reqs` may move: the team's own, then, `hops`
    times, every request holding GPUs on a pool the set so far may use (it could make room)."""
    movable = np.zeros(pr.n_requests, bool)
    movable[team_reqs] = True
    holds = x > 1e-9
    for _ in range(hops):
        pools = np.zeros(len(pr.pool_cap), bool)
        pools[pr.cell_pool[movable[pr.cell_req]]] = True
        grown = movable.copy()
        grown[pr.cell_req[holds & pools[pr.cell_pool]]] = True
        if (grown == movable).all():
            break
        movable = grown
    return np.flatnonzero(movable)


def replace_for_members(
    pr: Problem, x: np.ndarray, demand: np.ndarray, floors: dict[tuple[int, int], float]
) -> Replacement:
    """Place again, one starved team at a time (in tree order), the shares of `x`."""
    out = Replacement(x.copy())
    slack = float(pr.placement_slack)
    teams = starved_teams(pr, x, demand)
    if teams:
        cell_of = np.full((pr.n_requests, len(pr.pool_cap)), -1, dtype=np.int64)
        cell_of[pr.cell_req, pr.cell_pool] = np.arange(pr.n_cells)
    for team in teams:
        e = np.bincount(pr.cell_req, weights=out.x * pr.cell_speed, minlength=pr.n_requests)
        mine = np.flatnonzero((pr.req_node == team) & (demand > 0))
        near = np.zeros(pr.n_requests, bool)
        near[_neighbourhood(pr, out.x, mine, HOPS)] = True
        near[mine] = False
        others = np.flatnonzero(near & (demand > 0) & (e > 0))
        # everyone else keeps their GPUs where they are: the LP sees only what they leave
        still = ~np.isin(pr.cell_req, np.r_[mine, others])
        left = np.maximum(
            pr.pool_cap - np.bincount(pr.cell_pool[still], weights=out.x[still], minlength=len(pr.pool_cap)), 0.0
        )
        sub = replace(pr, pool_cap=left, limits=_limits_left(pr, out.x, still))
        if int(np.isin(pr.cell_req, np.r_[mine, others]).sum()) > MAX_CELLS:
            out.skipped.append(team)  # too large to re-solve here (docs/known-issues.md)
            continue
        units = [Unit(False, int(r)) for r in mine] + [Unit(False, int(r)) for r in others]
        parent = np.r_[np.full(len(mine), team), pr.req_node[others]].astype(np.int64)
        value = float(e[mine].sum())
        lowest = float(margins(np.array([value * (1.0 - slack)]))[0])
        model = level_model(
            sub,
            units,
            parent,
            demand,
            _floors_left(pr, out.x, still, floors),
            [(team, lowest, value * (1 + 1e-9) + 1e-9)],
        )
        weights = pr.req_weight[mine]
        a = np.zeros(len(units))
        a[: len(mine)] = weights / weights.sum()
        potential = np.zeros(len(units), bool)
        potential[model.class_unit] = True
        potential[len(mine) :] = False
        held = np.zeros(len(units))
        held[len(mine) :] = margins(e[others])
        g = GroupLP(model, a)
        result = water_fill_group(g, a, potential, ratio=RATIO, held=held)
        out.lp_solves += result.lp_solves
        out.teams += 1
        x_new = np.zeros(pr.n_cells)
        k = np.flatnonzero(result.x > 0)
        req_of = np.array([u.index for u in units], dtype=np.int64)[model.class_unit[model.cell_class[k]]]
        np.add.at(x_new, cell_of[req_of, model.pools[model.cell_pool[k]]], result.x[k])
        x_new[still] = out.x[still]
        after = float(np.bincount(pr.cell_req, weights=x_new * pr.cell_speed, minlength=pr.n_requests)[mine].sum())
        out.x = x_new
        out.value[team] = value
        if value - after > TOL * (1.0 + value):
            out.slack_used[team] = value - after
    return out


def _limits_left(pr: Problem, x: np.ndarray, still: np.ndarray) -> list[tuple[int, int, float]]:
    """Each limit less what the requests that stay put use under it."""
    return [(n, g, max(0.0, cap - float(x[pr.subtree_type_cells(n, g) & still].sum()))) for n, g, cap in pr.limits]


def _floors_left(
    pr: Problem, x: np.ndarray, still: np.ndarray, floors: dict[tuple[int, int], float]
) -> dict[tuple[int, int], float]:
    """Each guarantee floor less what the requests that stay put hold under it."""
    return {(n, g): max(0.0, v - float(x[pr.subtree_type_cells(n, g) & still].sum())) for (n, g), v in floors.items()}
