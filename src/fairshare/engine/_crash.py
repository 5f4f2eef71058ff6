"""A starting basis for the first solve of a large flat group, by column generation.

Why: a flat group with many requests (Gavel's instances: 8,192 requests on 3 pools) is one
cold LP that interior point takes most of a second to solve, yet at its optimum almost every
request uses one pool: the one where its speed is cheapest at the pools' prices (the pool
rows' duals).  So: estimate the prices on an evenly spaced sample of the requests; a request
whose best pool wins by a clear margin (and whose demand does not bind) is *sure*: it sits on
its level row on that pool, so its GPUs are (its t coefficient / its speed) x t and the sure
requests of a pool enter that pool's row as one term beta_p x t.  The LP of the other
requests plus those terms is small.  Its basis, with every sure request's cell basic and its
level row tight, is a basis of the group's LP with the same primal values, and its duals
price every cell: if no sure request's other pools price out, the basis is optimal for the
group's LP (the column generation optimality test); otherwise those requests join the small
LP and it is solved again.  HiGHS then starts from that basis and certifies it (no
iterations when it is optimal; if not, simplex continues from it), so the result is an exact
LP optimum, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import highspy
import numpy as np
import scipy.sparse as sp

from fairshare.engine._highs import INF, LP

if TYPE_CHECKING:
    from fairshare.engine._group import GroupLP

SAMPLE_MIN, SAMPLE_MAX = 256, 1024  # requests in the price-estimating sample
FIRST_BAND, FIRST_MARGIN = 0.02, 0.05  # sure from the sample's prices: best pool wins by 2%, demand 5% away
BAND, MARGIN = 3e-3, 3e-3  # sure again from the first small LP's (near-exact) prices
ROUNDS = 8
LOWER, BASIC = 0, 1  # HighsBasisStatus values
_STATUS = [highspy.HighsBasisStatus(i) for i in range(5)]


class _Cells:
    """The group's cells as (unit x pool) arrays: speed, cell index (-1: none), upper bound."""

    def __init__(self, g: GroupLP):
        m = g.model
        n, n_pools = m.n_units, len(m.pools)
        self.speed = np.zeros((n, n_pools))
        self.speed[g.cell_unit, m.cell_pool] = m.cell_speed
        self.index = np.full((n, n_pools), -1, dtype=np.int64)
        self.index[g.cell_unit, m.cell_pool] = np.arange(g.n_cells)
        self.upper = np.zeros((n, n_pools))
        self.upper[g.cell_unit, m.cell_pool] = m.cell_upper


def crash_basis(g: GroupLP) -> highspy.HighsBasis | None:
    """An optimal basis of `g`'s LP as it stands (None: no basis found; solve as usual).
    Only for a group whose units are single classes with no bound rows, t free."""
    m = g.model
    level = (g.unit_t_coef > 0) & (g.unit_lower == 0)  # units on their level row
    if not g.t_is_free or level.sum() < 2 * SAMPLE_MIN:
        return None
    cells = _Cells(g)
    prices = _sample_prices(g, level)
    if prices is None:
        return None
    sure, pool = _sure(g, cells, level, *prices, FIRST_BAND, FIRST_MARGIN)
    for rounds in range(ROUNDS):
        beta = np.bincount(
            pool[sure], weights=g.unit_t_coef[sure] / cells.speed[sure, pool[sure]], minlength=len(m.pools)
        )
        others = np.flatnonzero(~sure)
        if len(others) > m.n_units // 2:  # the LP would not be small: nothing to gain
            return None
        solved = _small_lp(g, others, beta, m.capacity)
        if solved is None:
            return None
        lp, lp_cells = solved
        y, t = lp.row_duals()[: len(m.pools)], float(lp.values()[-1])
        still, best = _sure(g, cells, level, y, t, 0.0, 0.0)
        bad = sure & (~still | (best != pool))
        if not bad.any():
            return _expand(g, cells, sure, pool, others, lp, lp_cells)
        if rounds == 0:  # near-exact prices now: choose the sure units again, closer to them
            sure, pool = _sure(g, cells, level, y, t, BAND, MARGIN)
        else:
            sure &= ~bad
    return None


def _sample_prices(g: GroupLP, level: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Pool prices and level t of every k-th level unit sharing the same fraction of the pools.
    If some units are held at a floor (their caps), they use GPUs too: then the sample is of
    every unit with a row, held ones included, and shares the fraction of the pools its size is
    of theirs (else the sample would see the held units' GPUs as free, and no pool binds)."""
    units = np.flatnonzero(level)
    held = np.flatnonzero((g.unit_lower > 0) & ~level)
    if len(held):
        units = np.sort(np.r_[units, held])
    size = min(SAMPLE_MAX, max(SAMPLE_MIN, len(units) // 16))
    sample = units[:: max(1, len(units) // size)]
    if len(held):
        fraction = len(sample) / len(units)
    else:
        fraction = g.unit_t_coef[sample].sum() / g.unit_t_coef[units].sum()
    solved = _small_lp(g, sample, np.zeros(len(g.model.pools)), g.model.capacity * fraction)
    if solved is None:
        return None
    lp = solved[0]
    return lp.row_duals()[: len(g.model.pools)].copy(), float(lp.values()[-1])


def _sure(
    g: GroupLP, cells: _Cells, level: np.ndarray, y: np.ndarray, t: float, band: float, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Level units whose cheapest pool (throughput per price) beats the next by `band` and
    whose GPUs there at level t stay `margin` below the cell's bound; and each unit's best pool."""
    n = len(level)
    rows = np.arange(n)
    # a pool whose price is (about) 0 is the cheapest by far; the floor keeps speed / price finite
    # (1e-300 here overflowed to inf on instances where every price is tiny)
    ratio = cells.speed / np.maximum(y, 1e-12 * max(float(np.max(y)), 1e-12))
    order = np.argsort(-ratio, axis=1, kind="stable")
    best = order[:, 0]
    second = ratio[rows, order[:, 1]] if ratio.shape[1] > 1 else np.zeros(n)
    need = g.unit_t_coef * t / np.maximum(cells.speed[rows, best], 1e-300)
    sure = level & (ratio[rows, best] > second * (1 + band)) & (need * (1 + margin) <= cells.upper[rows, best])
    return sure, best


def estimate_level(g: GroupLP, units: np.ndarray, caps: np.ndarray) -> float | None:
    """An estimate of the first step's level of a large flat group: the cap search's fixed
    point (units whose cap the level passes held there, the rest on their level rows) on an
    evenly spaced sample of the units sharing the same fraction of the pools.  Holding the
    caps a level passes never lowers the level (a held unit needs less than it did), so the
    sample's search climbs in a few small LPs.  The group's first solve then holds about the
    right caps: one cold solve (crash basis) instead of a cold solve holding none and a warm one
    changing thousands of rows.  `units`: the units that rise (on their level rows, with
    coefficients g.coeff).  None: no estimate (the search starts from nothing, as before)."""
    units = np.sort(units)
    if len(units) < 2 * SAMPLE_MIN:
        return None
    size = min(SAMPLE_MAX, max(SAMPLE_MIN, len(units) // 16))
    sample = units[:: max(1, len(units) // size)]
    coef = g.coeff[sample]
    fraction = coef.sum() / g.coeff[units].sum()
    tau = caps[sample] / coef
    floor = np.maximum(0.0, caps[sample] * (1 - 1e-9))
    held = np.zeros(len(sample), bool)
    t = 0.0
    for _ in range(ROUNDS):
        if held.all():
            return float(tau.max())
        solved = _small_lp(
            g,
            sample,
            np.zeros(len(g.model.pools)),
            g.model.capacity * fraction,
            np.where(held, 0.0, coef),
            np.where(held, floor, 0.0),
        )
        if solved is None:
            return t if t > 0 else None
        t = float(solved[0].values()[-1])
        passed = tau <= t * (1 + 1e-9)
        if (passed == held).all():
            break
        held = passed
    return t if t > 0 else None


def _small_lp(
    g: GroupLP,
    units: np.ndarray,
    beta: np.ndarray,
    capacity: np.ndarray,
    t_coef: np.ndarray | None = None,
    lower: np.ndarray | None = None,
) -> tuple[LP, np.ndarray] | None:
    """The group's LP over `units`' cells and t, the other units entering pool p as beta_p x t:
    rows pools, then the units' demand rows, then their unit rows (t's coefficient and lower
    bound as the group's LP has them, unless given).  None if infeasible."""
    if t_coef is None:
        t_coef = g.unit_t_coef[units]
    if lower is None:
        lower = g.unit_lower[units]
    m = g.model
    cells = np.flatnonzero(np.isin(g.cell_unit, units))
    local = np.full(m.n_units, -1)
    local[units] = np.arange(len(units))
    cu = local[g.cell_unit[cells]]
    k, nu, n_pools = len(cells), len(units), len(m.pools)
    r_u = n_pools + nu
    t_col = np.r_[beta, -t_coef]
    t_rows = np.r_[np.arange(n_pools), r_u + np.arange(nu)]
    nz = t_col != 0
    a = sp.csc_matrix(
        (
            np.r_[np.ones(k), np.ones(k), m.cell_speed[cells], t_col[nz]],
            (
                np.r_[m.cell_pool[cells], n_pools + cu, r_u + cu, t_rows[nz]],
                np.r_[np.arange(k), np.arange(k), np.arange(k), np.full(int(nz.sum()), k)],
            ),
        ),
        shape=(n_pools + 2 * nu, k + 1),
    )
    cost = np.zeros(k + 1)
    cost[k] = 1.0
    col_upper = np.r_[m.cell_upper[cells], INF]
    lp = LP(
        a,
        cost,
        np.zeros(k + 1),
        col_upper,
        np.r_[np.full(n_pools + nu, -INF), lower],
        np.r_[capacity, m.class_demand[units], np.full(nu, INF)],
    )
    return (lp, cells) if lp.run() else None


def _expand(
    g: GroupLP, cells: _Cells, sure: np.ndarray, pool: np.ndarray, others: np.ndarray, lp: LP, lp_cells: np.ndarray
) -> highspy.HighsBasis | None:
    """The small LP's basis as one of the group's LP: each sure unit's cell basic with its
    demand slack, its level row tight; everything else as in the small LP."""
    small = lp.h.getBasis()
    col_small = np.array([int(s) for s in small.col_status], dtype=np.int64)
    row_small = np.array([int(s) for s in small.row_status], dtype=np.int64)
    n_pools, nu = len(g.model.pools), len(others)
    col = np.full(g.n_cells + 1, LOWER, dtype=np.int64)
    col[lp_cells] = col_small[:-1]
    col[g.col_t] = col_small[-1]
    units = np.flatnonzero(sure)
    col[cells.index[units, pool[units]]] = BASIC
    row = np.full(g.lp.n_rows, BASIC, dtype=np.int64)
    row[:n_pools] = row_small[:n_pools]
    row[n_pools + others] = row_small[n_pools : n_pools + nu]  # demand rows: class == unit
    # a unit's row in use: its level row, or its floor row when held (two rows per unit: the
    # other one has no lower bound and stays basic)
    in_use = np.where(g.unit_t_coef > 0, g.row_unit, g.row_floor) + np.arange(g.model.n_units)
    row[in_use[others]] = row_small[n_pools + nu :]
    row[g.row_unit + units] = LOWER
    if int((col == BASIC).sum() + (row == BASIC).sum()) != g.lp.n_rows:
        return None
    basis = highspy.HighsBasis()
    basis.col_status = [_STATUS[s] for s in col.tolist()]
    basis.row_status = [_STATUS[s] for s in row.tolist()]
    basis.valid = True
    basis.alien = False  # a square basis by construction: HiGHS need not repair it
    return basis
