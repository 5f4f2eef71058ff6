"""Whole GPUs: round the exact shares without breaking any constraint.

Each (request, pool) share x becomes floor(x) or floor(x)+1, so it stays within one GPU of
the exact value, and each request's total becomes the floor or the ceiling of its exact total
(a request whose exact share is its whole demand keeps it, as its reason says).  Which cells
round up is a small 0/1 program over the fractional cells only (pools, demands, whole parts,
limits, guarantees and funded minimums as constraints), solved exactly by
HiGHS: place as many GPUs as every constraint allows (an idle whole GPU that a request below its
rounded-up share could use is not left idle), preferring the largest remainders.
Without limits or guarantees its matrix is a bipartite incidence matrix, so the LP
relaxation is already integral.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fairshare.engine._highs import INF, LP
from fairshare.engine._problem import Problem

SNAP = 1e-6


def round_allocation(
    problem: Problem, x: np.ndarray, floors: dict[tuple[int, int], float], funded_min: np.ndarray
) -> np.ndarray:
    """Integer GPUs per cell; funded_min[r] > 0 is a minimum the rounded total must keep."""
    near = np.rint(x)
    snapped = np.where(np.abs(x - near) < SNAP, near, x)
    base = np.floor(snapped)
    frac = snapped - base
    cand = np.flatnonzero(frac > 0)
    if not len(cand):
        return base.astype(np.int64)
    pr = problem
    rows: list[tuple[np.ndarray, float, float]] = []  # (candidate positions, lower, upper) on added units

    def group(mask_all: np.ndarray, lower: float, upper: float) -> None:
        sel = np.flatnonzero(mask_all[cand])
        have = float(base[mask_all].sum())
        if len(sel):
            rows.append((sel, lower - have, upper - have))

    # one row per pool and per request with candidate cells (in pool, then request, order)
    n_pool = len(pr.pool_cap)
    pool_have = np.bincount(pr.cell_pool, weights=base, minlength=n_pool)
    req_have = np.bincount(pr.cell_req, weights=base, minlength=pr.n_requests)
    pools, pool_row = np.unique(pr.cell_pool[cand], return_inverse=True)
    reqs, req_row = np.unique(pr.cell_req[cand], return_inverse=True)
    exact_req = np.bincount(pr.cell_req, weights=x, minlength=pr.n_requests)
    keep_min = np.where(funded_min[reqs] > 0, funded_min[reqs] - req_have[reqs], -INF)
    keep_whole = np.floor(exact_req[reqs] + SNAP) - req_have[reqs]  # a total keeps its whole part
    lo_parts = [np.full(len(pools), -INF), np.maximum(keep_min, keep_whole)]
    up_parts = [
        pr.pool_cap[pools] - pool_have[pools],
        np.minimum(pr.req_demand[reqs], np.ceil(exact_req[reqs] - SNAP)) - req_have[reqs],
    ]
    for node, gpu, cap in pr.limits:
        group(pr.subtree_type_cells(node, gpu), -INF, cap)
    for (node, gpu), floor in floors.items():
        if floor > 0:
            group(pr.subtree_type_cells(node, gpu), floor, INF)

    positions = np.arange(len(cand))
    r_idx = np.concatenate(
        [pool_row, len(pools) + req_row]
        + [np.full(len(sel), len(pools) + len(reqs) + i) for i, (sel, _, _) in enumerate(rows)]
    )
    c_idx = np.concatenate([positions, positions] + [sel for sel, _, _ in rows])
    row_lo = np.concatenate(lo_parts + [np.array([lo for _, lo, _ in rows])])
    row_up = np.concatenate(up_parts + [np.array([up for _, _, up in rows])])
    a = sp.csc_matrix((np.ones(len(r_idx)), (r_idx, c_idx)), shape=(len(row_lo), len(cand)))
    cost = 1.0 + 1e-3 * frac[cand]  # most GPUs first, then the largest remainders
    bounds = (np.zeros(len(cand)), np.ones(len(cand)), row_lo, row_up)
    chosen = None
    if not pr.limits and not floors:
        # pools and requests form a flow network: its LP vertices are already 0/1,
        # and dual simplex reaches one several times faster than interior point
        relaxed = LP(a, cost, *bounds, cold_ipm=False)
        if relaxed.run():
            v = relaxed.values()
            if np.all(np.abs(v - np.rint(v)) < 1e-6):
                chosen = np.rint(v)
    if chosen is None:
        lp = LP(a, cost, *bounds, integer=np.ones(len(cand), bool))
        if not lp.run():
            # nested limits and guarantees at odd fractions may leave no rounding that also keeps
            # every request's whole part: keep only the funded minimums then
            min_only = row_lo.copy()
            min_only[len(pools) : len(pools) + len(reqs)] = keep_min
            lp = LP(a, cost, bounds[0], bounds[1], min_only, bounds[3], integer=np.ones(len(cand), bool))
            if not lp.run():
                # no rounding keeps every constraint (rare); fall back to rounding down, which
                # only guarantees and minimums can break
                return base.astype(np.int64)
        chosen = np.rint(lp.values())
    out = base.copy()
    out[cand] += chosen
    lo = np.maximum(np.floor(exact_req + SNAP), np.where(funded_min > 0, funded_min, 0.0))
    hi = np.minimum(pr.req_demand, np.ceil(exact_req - SNAP))
    exchange(pr, out, cand, chosen.astype(bool), lo, hi)
    return out.astype(np.int64)


EXCHANGE_MAX_REQUESTS = 200  # a team with more requests to round keeps the solver's rounding
EXCHANGE_MAX_PASSES = 50
EXCHANGE_MAX_VISITS = 200_000  # (giver, taker) pairs looked at per rounding; beyond, the rest is kept
LEX_TOL = 1e-9


def exchange(pr: Problem, out: np.ndarray, cand: np.ndarray, up: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Improve the rounding `out` (in place) towards the lexicographically best one: within each
    team, move a rounded-up GPU from one request to another that may round up in the same pool,
    or swap two requests' round-ups across two pools, whenever the two requests' levels
    (effective GPUs per unit of weight), sorted, get lexicographically larger.  Each team keeps
    its GPUs in every pool, so pools, limits and guarantees hold as before; every cell stays the
    floor or the ceiling of its exact share (`cand`: the cells with a fraction, `up`: rounded
    up), every request's total within [lo, hi].  A local search: it stops when no such move
    improves the sorted levels (the issue's V100/P100 swap is one)."""
    by_req: dict[int, tuple[dict[int, int], dict[int, int]]] = {}  # request -> (up, down): pool -> cell
    for c, u in zip(cand.tolist(), up.tolist(), strict=True):
        r = int(pr.cell_req[c])
        by_req.setdefault(r, ({}, {}))[0 if u else 1][int(pr.cell_pool[c])] = c
    teams: dict[int, list[int]] = {}
    for r in sorted(by_req):
        teams.setdefault(int(pr.req_node[r]), []).append(r)
    total = np.bincount(pr.cell_req, weights=out, minlength=pr.n_requests)
    value = np.bincount(pr.cell_req, weights=out * pr.cell_speed, minlength=pr.n_requests)
    speed, weight = pr.cell_speed, pr.req_weight
    visits = 0
    for members in teams.values():
        if not 2 <= len(members) <= EXCHANGE_MAX_REQUESTS:
            continue
        pools = sorted({p for r in members for side in by_req[r] for p in side})
        for _ in range(EXCHANGE_MAX_PASSES):
            moved = False
            for p in pools:
                givers = [r for r in members if p in by_req[r][0]]
                takers = [r for r in members if p in by_req[r][1]]
                visits += len(givers) * len(takers)
                if visits > EXCHANGE_MAX_VISITS:
                    return
                for a in givers:
                    for b in takers:
                        if a != b and p in by_req[a][0] and p in by_req[b][1]:
                            moved |= _try_pair(a, b, p, by_req, out, total, value, speed, weight, lo, hi)
            if not moved:
                break


def _try_pair(
    a: int,
    b: int,
    p: int,
    by_req: dict[int, tuple[dict[int, int], dict[int, int]]],
    out: np.ndarray,
    total: np.ndarray,
    value: np.ndarray,
    speed: np.ndarray,
    weight: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> bool:
    """Make the best exchange of a's round-up in pool p with request b (which may round up
    there), if one makes their sorted levels lexicographically larger."""
    a_up, a_down = by_req[a]
    b_up, b_down = by_req[b]
    ca, cb = a_up[p], b_down[p]
    old = sorted((value[a] / weight[a], value[b] / weight[b]))
    moves: list[tuple[float, float, list[tuple[int, int, int]]]] = []
    if total[a] - 1 >= lo[a] - 1e-9 and total[b] + 1 <= hi[b] + 1e-9:  # move the GPU
        moves.append((value[a] - speed[ca], value[b] + speed[cb], [(a, p, -1), (b, p, +1)]))
    for q in b_up:  # or swap with a round-up of b's in another pool that a may take
        if q != p and q in a_down:
            va = value[a] - speed[ca] + speed[a_down[q]]
            vb = value[b] + speed[cb] - speed[b_up[q]]
            moves.append((va, vb, [(a, p, -1), (b, p, +1), (a, q, +1), (b, q, -1)]))
    best = None
    for va, vb, steps in moves:
        new = sorted((va / weight[a], vb / weight[b]))
        if _lex_better(new, old) and (best is None or _lex_better(new, best[0])):
            best = (new, va, vb, steps)
    if best is None:
        return False
    for r, pool, d in best[3]:
        ups, downs = by_req[r]
        c = (ups if d < 0 else downs).pop(pool)
        (downs if d < 0 else ups)[pool] = c
        out[c] += d
        total[r] += d
    value[a], value[b] = best[1], best[2]
    return True


def _lex_better(new: list[float], old: list[float]) -> bool:
    """Is the sorted pair `new` lexicographically larger than `old` (beyond float noise)?"""
    tol = LEX_TOL * (1.0 + abs(old[0]))
    if new[0] > old[0] + tol:
        return True
    return new[0] >= old[0] - tol and new[1] > old[1] + LEX_TOL * (1.0 + abs(old[1]))
