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
    return out.astype(np.int64)
