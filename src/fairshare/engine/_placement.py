"""Placement serves the requests below: a team whose share was placed where some of its own
requests cannot run has it placed again, with every other value held.

The top-down pass (engine/_hierarchy.py) hands each node its share per pool.  When a parent's
LP is indifferent (or nearly) between placements, it can put a team's share on pools one of
the team's requests cannot use, and that request starves (at 0 or at a small share) while its
siblings do well.  Values are what the levels above decide, not pools: so for such a team,
one bounded LP shares the team's value among its starved requests and its largest holders
again (weighted max-min, as in its own group), with the requests of other teams that can make
room (two pool swaps deep, the largest holders first) held at the effective GPUs they have,
limits and guarantees on what the subtrees use, and the team's effective total at most its
value and at least its value less placement_slack x the team's value: the team may give up
that much of its own throughput so that its members can run where they can, and no other
node pays anything.  With placement_slack 0 only placements that cost the team nothing are
taken (a swap with a team that can run elsewhere at the same speed).  docs/algorithm.md has
the definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fairshare.engine._group import GroupLP, Unit
from fairshare.engine._hierarchy import cell_index, has_usable_idle, leftover_pass
from fairshare.engine._levels import level_model
from fairshare.engine._problem import Problem
from fairshare.engine._waterfill import GroupInfeasible, margins, water_fill_group

TOL = 1e-6
STARVED = 0.5  # a request below this x the level of its best-off sibling is starved
MAX_OTHERS = 16  # room makers per hop (largest holders first); also the most starved requests moved per team
ROOM = 4  # room makers are added until they hold this x what the starved requests still want
HOPS = 2  # how far room is looked for: each hop a pool swap
PAYERS = 8  # the team's largest holders that move (and pay) with its starved requests
RATIO = 1.5  # the cap search's first guess (as a team's group does)


@dataclass
class Replacement:
    """What placing teams' shares again changed."""

    x: np.ndarray
    slack_used: dict[int, float] = field(default_factory=dict)  # node -> effective GPUs it gave up
    value: dict[int, float] = field(default_factory=dict)  # node -> its value before (effective GPUs)
    lp_solves: int = 0
    teams: int = 0


def starved_requests(pr: Problem, x: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """Requests (on a team: a node with requests hanging on it, not the root) that still want
    GPUs and are below STARVED x the level (effective GPUs per unit of weight) of a sibling
    that holds GPUs: within its team's group, its pools ran out first, the sign that the
    team's share was placed where it cannot run (at 0, or at a small share)."""
    got = np.bincount(pr.cell_req, weights=x, minlength=pr.n_requests)
    e = np.bincount(pr.cell_req, weights=x * pr.cell_speed, minlength=pr.n_requests)
    has_cells = np.zeros(pr.n_requests, bool)
    has_cells[pr.cell_req] = True
    hungry = (demand > 0) & (got < demand - 1e-4) & has_cells
    level = e / pr.req_weight
    best = np.zeros(pr.n_nodes)
    np.maximum.at(best, pr.req_node, level)
    starved = hungry & (level <= STARVED * best[pr.req_node]) & (best[pr.req_node] > 1e-4) & (pr.req_node != 0)
    return np.flatnonzero(starved)


def starved_teams(pr: Problem, x: np.ndarray, demand: np.ndarray) -> list[int]:
    """The teams of the starved requests, in tree order."""
    return np.unique(pr.req_node[starved_requests(pr, x, demand)]).tolist()


def _room_makers(pr: Problem, x: np.ndarray, team: int, starved: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """The requests of other teams that may move to make room for `starved` (of `team`), HOPS
    swaps deep: first those holding GPUs on the pools the starved requests can use, then those
    holding GPUs on the pools *those* can use; at each hop the largest holders first, until
    they hold ROOM x what the starved requests still want (at most MAX_OTHERS per hop).  They
    may move to any pool with room, the team's own among them (its other requests can give
    GPUs up); everyone else keeps their GPUs where they are."""
    got = np.bincount(pr.cell_req, weights=x, minlength=pr.n_requests)
    want = ROOM * float(np.maximum(demand[starved] - got[starved], 0.0).sum())
    chosen = np.zeros(pr.n_requests, bool)
    chosen[pr.req_node == team] = True
    frontier = starved
    for _ in range(HOPS):
        pools = np.zeros(len(pr.pool_cap), bool)
        pools[pr.cell_pool[_mask(pr.n_requests, frontier)[pr.cell_req]]] = True
        on = (x > 1e-9) & pools[pr.cell_pool] & ~chosen[pr.cell_req] & (demand[pr.cell_req] > 0)
        held = np.bincount(pr.cell_req[on], weights=x[on], minlength=pr.n_requests)
        order = np.flatnonzero(held > 0)
        order = order[np.argsort(-held[order], kind="stable")][:MAX_OTHERS]
        frontier = order[: int(np.searchsorted(np.cumsum(held[order]), want)) + 1]
        if not len(frontier):
            break
        chosen[frontier] = True
    chosen[pr.req_node == team] = False
    return np.flatnonzero(chosen)


def replace_for_members(
    pr: Problem, x: np.ndarray, demand: np.ndarray, floors: dict[tuple[int, int], float]
) -> Replacement:
    """Place again, one team with starved requests at a time (in tree order), the shares of `x`."""
    out = Replacement(x.copy())
    starved = starved_requests(pr, x, demand)
    teams = np.unique(pr.req_node[starved]).tolist()
    if not teams:
        return out
    cell_of = cell_index(pr)
    e = np.bincount(pr.cell_req, weights=x * pr.cell_speed, minlength=pr.n_requests)
    got = np.bincount(pr.cell_req, weights=x, minlength=pr.n_requests)
    level = e / pr.req_weight
    for team in teams:
        mine = starved[pr.req_node[starved] == team]
        mine = mine[np.argsort(level[mine], kind="stable")][:MAX_OTHERS]  # the most starved first
        _replace_team(pr, out, team, np.sort(mine), demand, floors, cell_of, e, got)
    if out.teams and has_usable_idle(pr, out.x, demand):
        out.x = leftover_pass(pr, out.x, demand)  # nobody loses anything
        out.lp_solves += 1
    return out


def _replace_team(
    pr: Problem,
    out: Replacement,
    team: int,
    starved: np.ndarray,
    demand: np.ndarray,
    floors: dict[tuple[int, int], float],
    cell_of: np.ndarray,
    e: np.ndarray,
    got: np.ndarray,
) -> None:
    """One LP over the moving requests of the team (the starved and its largest holders, on
    level rows: weighted max-min among them, the same progressive filling as a group) and the
    room makers (held at their effective GPUs), with the team's effective total between its
    value less `placement_slack` x the team's value, and its value.  Taken only if the team's
    sorted levels are lexicographically no worse than before; GPUs left idle go to whoever can
    use them once every team is done (replace_for_members).  `e` and `got` (each request's
    effective GPUs and GPUs in `out.x`) are kept up to date."""
    x = out.x
    team_reqs = np.flatnonzero((pr.req_node == team) & (demand > 0))
    # the starved requests and the team's largest holders (who pay); the rest of the team stays put
    payers = np.setdiff1d(team_reqs, starved)
    payers = payers[np.argsort(-got[payers], kind="stable")][:PAYERS]
    mine = np.sort(np.r_[starved, payers[got[payers] > 1e-9]]).astype(np.int64)
    others = _room_makers(pr, x, team, starved, demand)
    others = others[e[others] > 0]
    moving = _mask(pr.n_requests, np.r_[mine, others])[pr.cell_req]
    still = ~moving
    left = np.maximum(pr.pool_cap - np.bincount(pr.cell_pool[still], weights=x[still], minlength=len(pr.pool_cap)), 0)
    value = float(e[mine].sum())
    team_value = float(e[team_reqs].sum())
    lowest = float(margins(np.array([value - team_value * float(pr.placement_slack)]))[0])
    units = [Unit(False, int(r)) for r in mine] + [Unit(False, int(r)) for r in others]
    parent = np.r_[np.full(len(mine), team), pr.req_node[others]].astype(np.int64)
    sub = replace(pr, pool_cap=left, limits=_limits_left(pr, x, still))
    model = level_model(
        sub, units, parent, demand, _floors_left(pr, x, still, floors), [(team, lowest, value * (1 + 1e-9) + 1e-9)]
    )
    n_mine = len(mine)
    a = np.zeros(len(units))
    a[:n_mine] = pr.req_weight[mine] / pr.req_weight[mine].sum()
    potential = np.zeros(len(units), bool)
    potential[model.class_unit] = True
    potential[n_mine:] = False
    held = np.zeros(len(units))
    held[n_mine:] = margins(e[others])
    g = GroupLP(model, a)
    try:
        result = water_fill_group(g, a, potential, ratio=RATIO, held=held, primal_after_first=True)
    except GroupInfeasible:  # numerical trouble in a repair: keep what the top-down pass gave
        return
    finally:
        out.lp_solves += g.lp.solves
    xg = result.x
    k = np.flatnonzero(xg > 0)
    req_of = np.array([u.index for u in units], dtype=np.int64)[model.class_unit[model.cell_class[k]]]
    x_new = np.where(moving, 0.0, x)
    np.add.at(x_new, cell_of[req_of, model.pools[model.cell_pool[k]]], xg[k])
    movers = np.r_[mine, others]
    cells = np.flatnonzero(moving)
    e_after = e.copy()
    e_after[movers] = 0.0
    np.add.at(e_after, pr.cell_req[cells], x_new[cells] * pr.cell_speed[cells])
    if not _lex_at_least(np.sort(e_after[mine] / pr.req_weight[mine]), np.sort(e[mine] / pr.req_weight[mine])):
        return
    got[movers] = 0.0
    np.add.at(got, pr.cell_req[cells], x_new[cells])
    e[:] = e_after
    out.x = x_new
    out.teams += 1
    out.value[team] = team_value
    spent = value - float(e_after[mine].sum())
    if spent > TOL * (1.0 + team_value):
        out.slack_used[team] = spent


def _mask(n: int, index: np.ndarray) -> np.ndarray:
    """A boolean mask of length n, True at `index` (a cell-wide np.isin costs far more)."""
    out = np.zeros(n, bool)
    out[index] = True
    return out


def _lex_at_least(a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> bool:
    """Is the sorted vector `a` lexicographically at least `b` (to a relative tolerance)?"""
    for u, v in zip(a.tolist(), b.tolist(), strict=True):
        if u > v + tol * (1 + abs(v)):
            return True
        if u < v - tol * (1 + abs(v)):
            return False
    return True


def _limits_left(pr: Problem, x: np.ndarray, still: np.ndarray) -> list[tuple[int, int, float]]:
    """Each limit less what the requests that stay put use under it."""
    return [(n, g, max(0.0, cap - float(x[pr.subtree_type_cells(n, g) & still].sum()))) for n, g, cap in pr.limits]


def _floors_left(
    pr: Problem, x: np.ndarray, still: np.ndarray, floors: dict[tuple[int, int], float]
) -> dict[tuple[int, int], float]:
    """Each guarantee floor less what the requests that stay put hold under it."""
    return {(n, g): max(0.0, v - float(x[pr.subtree_type_cells(n, g) & still].sum())) for (n, g), v in floors.items()}
