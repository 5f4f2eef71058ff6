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

SAMPLE_MIN, SAMPLE_MAX = 256, 2048  # requests in the price-estimating sample
FIRST_BAND = 0.02  # sure from the sample's prices: every other shape 2% away
FLEX_MIN, FLEX_PART = 64, 64  # the small LP has at least the max(64, 1/64th) least sure units
BAND = 3e-3  # the narrowest band (and primal margin) once the prices come from the group's own small LP
TIE = 1e-9  # a shape whose reduced costs or values are this far (relative) on the wrong side of 0 is wrong
MAX_BAND = 0.16  # the widest band a plan is retried with
EXACT = 1e-12  # two prices per effective GPU this close are a tie
ROUNDS = 8
LOWER, BASIC, UPPER = 0, 1, 2  # HighsBasisStatus values
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
    g.crash_end = None
    level = (g.unit_t_coef > 0) & (g.unit_lower == 0)  # units on their level row
    if not g.t_is_free or level.sum() < 2 * SAMPLE_MIN:
        return None
    cells = _Cells(g)
    prices = g.prices if g.prices is not None else _sample_prices(g, level)
    if prices is None:
        return None
    y_was, t_was = prices
    plan, band = _plan(g, cells, y_was, t_was), FIRST_BAND
    flex = max(FLEX_MIN, m.n_units // FLEX_PART)
    _balance_ties(g, cells, plan, t_was)
    wrong = np.zeros(m.n_units, bool)  # units once planned sure and then not: in the small LP from then on
    for _ in range(ROUNDS):
        # the units least sure always join the small LP, so that it can balance the pools
        sure = plan.sure(max(band, float(np.partition(plan.score, flex)[flex]))) & ~wrong
        beta, const = plan.pool_terms(g, cells, sure)
        others = np.flatnonzero(~sure)
        if len(others) > m.n_units // 2:  # the LP would not be small: nothing to gain
            return None
        solved = _small_lp(g, others, beta, m.capacity - const, start=(plan, cells))
        if solved is not None:
            lp, lp_cells = solved
            y, t = lp.row_duals()[: len(m.pools)], float(lp.values()[-1])
            if not np.any(y > 1e-9):
                # no pool binds: the level stops at a unit's demand (the LP holds too few caps);
                # the prices say nothing about the units, so no plan can be right
                g.crash_end = (y, t, True, None)
                return None
            again = _plan(g, cells, y, t)
            bad = sure & ~(again.sure(-TIE) & plan.same_as(again))
            if not bad.any():
                g.crash_end = (y, t, False, _unit_duals(g, cells, plan, sure, others, lp, y))
                return _expand(g, cells, plan, sure, others, lp, lp_cells)
        if (
            solved is None
            or bad.sum() > len(others)
            or np.any((y <= 1e-9 * float(np.max(y))) != (y_was <= 1e-9 * float(np.max(y_was))))
        ):
            # the prices were further off than the band: the sure units' mistakes were more than
            # the small LP could balance (it went infeasible, more sure units turned out wrong
            # than it had free, or a pool gained or lost its price).  Plan again at the same
            # prices with a band twice as wide
            if band >= MAX_BAND:
                return None
            band = min(2 * band, MAX_BAND)
            continue
        wrong |= bad  # so the rounds cannot cycle between two plans
        # plan again at the new prices, with a band as wide as the prices just moved: the
        # prices of a small LP whose sure units were wrong are off by about as much
        moved = float(np.max(np.abs(y / max(float(np.max(y)), 1e-300) - y_was / max(float(np.max(y_was)), 1e-300))))
        band = min(max(2 * (moved + abs(t - t_was) / max(t, 1e-300)), BAND), FIRST_BAND)
        plan, y_was, t_was = again, y, t
        _balance_ties(g, cells, plan, t)
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
    size = min(SAMPLE_MAX, max(SAMPLE_MIN, len(units) // 8))
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


IDLE, ONE, TWO = 1, 2, 3  # a unit's shape at the optimum (0: not sure)


class _Plan:
    """Each unit's shape at the LP's optimum, as prices y and level t say it would be.

    At the optimum each unit uses its GPUs in the cheapest way that meets its row in use,
    e_u >= a_u t + L_u (a_u = its t coefficient, 0 when held at a floor L_u): that is the LP of
    one unit, whose optimal vertex is
      * IDLE: nothing needed (held at a floor <= 0): no cell, every row basic;
      * ONE: one pool, the cheapest per unit of throughput (price / speed), demand slack: the
        cell basic, the row in use tight;
      * TWO: the demand binds (the cheapest pool alone cannot meet the row within the demand,
        e.g. a unit held at its cap, or one whose level needs most of its demand): two pools,
        the demand row at its upper bound, both cells basic, the row in use tight.
    A shape is *sure* at `band` if its basic values keep that far (relative to the part of the
    row that moves with t) from their bounds and every other cell's reduced cost is that far
    (relative) from 0.  A sure unit's GPUs on each
    pool are affine in t (constant when held), so sure units enter the pool rows as beta_p t +
    const_p."""

    def __init__(self, n: int):
        self.kind = np.zeros(n, dtype=np.int64)
        self.p = np.zeros(n, dtype=np.int64)  # ONE: its pool; TWO: the faster pool
        self.q = np.zeros(n, dtype=np.int64)  # TWO: the slower pool; ONE and tied: the other pool
        self.tied = np.zeros(n, dtype=bool)  # ONE, and two pools are exactly as cheap (see _balance_ties)
        # how far the shape is from changing: the smallest relative reduced cost of a nonbasic cell,
        # and the smallest distance of a basic value from its bounds relative to the part moving with t
        self.score = np.full(n, -INF)

    def sure(self, band: float) -> np.ndarray:
        return (self.kind > 0) & (self.score > band)

    def same_as(self, other: _Plan) -> np.ndarray:
        one = self.kind == ONE
        pool = (self.p == other.p) | (one & other.tied & (self.p == other.q))  # a tie: either pool is optimal
        return (self.kind == other.kind) & pool & (one | (self.kind == IDLE) | (self.q == other.q))

    def pool_terms(self, g: GroupLP, cells: _Cells, sure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """beta_p and const_p: the sure units' GPUs on pool p at level t are beta_p t + const_p."""
        n_pools = len(g.model.pools)
        a, low, dem = g.unit_t_coef, g.unit_lower, g.model.class_demand
        one = np.flatnonzero(sure & (self.kind == ONE))
        two = np.flatnonzero(sure & (self.kind == TWO))
        s_one = cells.speed[one, self.p[one]]
        p, q = self.p[two], self.q[two]
        sp_, sq = cells.speed[two, p], cells.speed[two, q]
        gap = sp_ - sq
        # TWO: x_p = (a t + L - D s_q) / (s_p - s_q), x_q = D - x_p
        beta = np.zeros(n_pools)
        beta += np.bincount(self.p[one], weights=a[one] / s_one, minlength=n_pools)
        beta += np.bincount(p, weights=a[two] / gap, minlength=n_pools)
        beta -= np.bincount(q, weights=a[two] / gap, minlength=n_pools)
        const = np.zeros(n_pools)
        const += np.bincount(self.p[one], weights=low[one] / s_one, minlength=n_pools)
        x_p0 = (low[two] - dem[two] * sq) / gap
        const += np.bincount(p, weights=x_p0, minlength=n_pools)
        const += np.bincount(q, weights=dem[two] - x_p0, minlength=n_pools)
        return beta, const


def _balance_ties(g: GroupLP, cells: _Cells, plan: _Plan, t: float) -> None:
    """Share the tied units (two pools exactly as cheap for them) between their two pools.
    Planned on the first, they would all crowd it and leave the other empty, more than the
    small LP's units could balance; so each pair's tied units are cut (in unit order) so that
    both pools are equally full (relative to their size) at level t, and a tied unit is as sure
    as its distance from the cut (in GPUs, relative to the smaller pool): the band that frees
    the units whose plan may be wrong also frees the tied units that can make up for them (and
    a unit that ties by chance, at the prices that balance the pools, is not sure at all)."""
    tied = np.flatnonzero(plan.tied)
    if not len(tied):
        return
    beta, const = plan.pool_terms(g, cells, (plan.kind > 0) & ~plan.tied)
    capacity = g.model.capacity
    left = capacity - beta * t - const
    need = g.unit_t_coef * t + g.unit_lower
    pairs = plan.p[tied] * len(left) + plan.q[tied]
    for pair in np.unique(pairs).tolist():
        units = tied[pairs == pair]
        p, q = divmod(pair, len(left))
        x_p, x_q = need[units] / cells.speed[units, p], need[units] / cells.speed[units, q]
        # the share on p that leaves both pools equally full (t is only an estimate: if it is
        # high, both overflow alike, as the other pools do, and the small LP lowers t)
        cap_p, cap_q = capacity[p], capacity[q]
        used_p, used_q = cap_p - left[p], cap_q - left[q]
        share = (cap_p * (used_q + x_q.sum()) - cap_q * used_p) / max(cap_p * x_q.sum() + cap_q * x_p.sum(), 1e-300)
        total = max(float(x_p.sum()), 1e-300)
        at = np.cumsum(x_p)
        cut = int(np.searchsorted(at, min(max(share, 0.0), 1.0) * total, side="right"))
        moved = units[cut:]
        plan.p[moved], plan.q[moved] = q, p
        left[p] -= float(np.sum(x_p[:cut]))
        left[q] -= float(np.sum(x_q[cut:]))
        dist = np.abs(at - x_p / 2 - (at[cut - 1] if cut else 0.0)) / min(cap_p, cap_q)
        plan.score[units] = np.minimum(plan.score[units], dist)


def _plan(g: GroupLP, cells: _Cells, y: np.ndarray, t: float) -> _Plan:
    """Each unit's shape at prices y and level t, and how sure it is (see _Plan)."""
    n, n_pools = g.model.n_units, len(g.model.pools)
    plan = _Plan(n)
    a, low, dem = g.unit_t_coef, g.unit_lower, g.model.class_demand
    need = a * t + low  # the effective GPUs each unit's row in use asks for
    moving = np.maximum(a * t, 1e-300)  # the part of it that moves with t (a held unit's floor is exact)
    has = cells.index >= 0
    idle = (a == 0) & (low <= 0)
    plan.kind[idle] = IDLE
    plan.score[idle] = INF
    # a pool whose price is (about) 0 is the cheapest by far; the floor keeps price / speed finite
    # (1e-300 here overflowed to inf on instances where every price is tiny)
    price = np.maximum(y, 1e-12 * max(float(np.max(y)), 1e-12))
    with np.errstate(divide="ignore"):
        per = np.where(has, price / np.where(has, cells.speed, 1.0), INF)  # price per effective GPU
    rows = np.arange(n)
    order = np.argsort(per, axis=1, kind="stable")
    best = order[:, 0]
    second = per[rows, order[:, 1]] if n_pools > 1 else np.full(n, INF)
    speed = np.maximum(cells.speed[rows, best], 1e-300)
    room = np.minimum(dem, cells.upper[rows, best])
    x_one = need / speed
    one = ~idle & (need > 0) & (x_one <= room)
    plan.kind[one] = ONE
    plan.p[one] = best[one]
    # two pools exactly as cheap (a unit as fast on both, and the prices equal): either is optimal,
    # so the unit is as sure as the third pool is dearer; _balance_ties chooses between the two
    third = per[rows, order[:, 2]] if n_pools > 2 else np.full(n, INF)
    tied = one & (second <= per[rows, best] * (1 + EXACT))
    plan.tied[tied] = True
    plan.q[tied] = order[tied, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        dual = np.where(tied, third, second)[one] / per[one, best[one]] - 1
        plan.score[one] = np.minimum(dual, (room[one] - x_one[one]) * speed[one] / moving[one])
    # the demand binds: the pair of pools whose two-cell vertex is primal and dual feasible
    left = np.flatnonzero(~idle & (need > 0) & (x_one > room))
    for i in range(n_pools):
        for j in range(n_pools):
            if not len(left):
                return plan
            sp_, sq = cells.speed[left, i], cells.speed[left, j]
            ok = (sp_ > sq * (1 + 1e-9)) & (sq > 0)
            gap = np.where(ok, sp_ - sq, 1.0)
            d = dem[left]
            x_p = (need[left] - d * sq) / gap
            x_q = d - x_p
            lam = (price[i] - price[j]) / gap  # the row in use's dual; mu the demand row's
            mu = lam * sp_ - price[i]
            # primal: how far (relative to the part that moves with t) both cells are from their bounds
            room_p = np.minimum(
                np.minimum(x_p, x_q), np.minimum(cells.upper[left, i] - x_p, cells.upper[left, j] - x_q)
            )
            score = np.minimum(room_p * gap / moving[left], mu / price[i])
            # every other cell's reduced cost: price + mu - lam x speed, relative to price + mu
            for k in range(n_pools):
                if k not in (i, j):
                    rc = (price[k] + mu - lam * cells.speed[left, k]) / np.maximum(price[k] + mu, 1e-300)
                    score = np.minimum(score, np.where(has[left, k], rc, INF))
            ok &= (lam > 0) & (score >= 0)
            better = ok & (score > plan.score[left])
            hit = left[better]
            plan.kind[hit], plan.p[hit], plan.q[hit], plan.score[hit] = TWO, i, j, score[better]
    return plan


def _small_lp(
    g: GroupLP,
    units: np.ndarray,
    beta: np.ndarray,
    capacity: np.ndarray,
    t_coef: np.ndarray | None = None,
    lower: np.ndarray | None = None,
    start: tuple[_Plan, _Cells] | None = None,
) -> tuple[LP, np.ndarray] | None:
    """The group's LP over `units`' cells and t, the other units entering pool p as beta_p x t:
    rows pools, then the units' demand rows, then their unit rows (t's coefficient and lower
    bound as the group's LP has them, unless given).  None if infeasible.  `start`: a plan of
    the units' shapes, for a starting basis (their shapes at slightly wrong prices are mostly
    right: simplex then needs a few pivots per wrong unit, not two per unit)."""
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
        cold_ipm=start is None,
    )
    if start is not None:
        plan, grid = start
        lp.crash = lambda: _small_basis(plan, grid, units, cells, n_pools)
        lp.prefer_dantzig()  # no steepest-edge weights to compute for a basis HiGHS did not reach
    return (lp, cells) if lp.run() else None


def _small_basis(plan: _Plan, grid: _Cells, units: np.ndarray, cells: np.ndarray, n_pools: int) -> highspy.HighsBasis:
    """A basis of _small_lp's LP with each unit in its planned shape (see _expand), its pool
    rows tight and t basic: short of a few basic variables, which HiGHS adds (an alien basis)."""
    nu, k = len(units), len(cells)
    small_col = np.full(int(grid.index.max()) + 1, -1, dtype=np.int64)
    small_col[cells] = np.arange(k)
    kind, p, q = plan.kind[units], plan.p[units], plan.q[units]
    col = np.full(k + 1, LOWER, dtype=np.int64)
    col[k] = BASIC
    local = np.arange(nu)
    one, two = local[kind == ONE], local[kind == TWO]
    col[small_col[grid.index[units[one], p[one]]]] = BASIC
    col[small_col[grid.index[units[two], p[two]]]] = BASIC
    col[small_col[grid.index[units[two], q[two]]]] = BASIC
    row = np.full(n_pools + 2 * nu, BASIC, dtype=np.int64)
    row[:n_pools] = UPPER
    row[n_pools + two] = UPPER
    row[n_pools + nu + one] = LOWER
    row[n_pools + nu + two] = LOWER
    basis = highspy.HighsBasis()
    basis.col_status = [_STATUS[v] for v in col.tolist()]
    basis.row_status = [_STATUS[v] for v in row.tolist()]
    basis.valid = True
    basis.alien = True
    return basis


def _unit_duals(
    g: GroupLP, cells: _Cells, plan: _Plan, sure: np.ndarray, others: np.ndarray, lp: LP, y: np.ndarray
) -> np.ndarray:
    """The dual of each unit's row in use at the crash's optimum: a sure unit's from its shape
    (ONE: price / speed of its pool; TWO: (y_p - y_q) / (s_p - s_q)), the others' from the small LP."""
    n, n_pools, nu = g.model.n_units, len(g.model.pools), len(others)
    duals = np.zeros(n)
    duals[others] = np.abs(lp.row_duals()[n_pools + nu :])
    one = np.flatnonzero(sure & (plan.kind == ONE))
    duals[one] = y[plan.p[one]] / cells.speed[one, plan.p[one]]
    two = np.flatnonzero(sure & (plan.kind == TWO))
    p, q = plan.p[two], plan.q[two]
    duals[two] = (y[p] - y[q]) / (cells.speed[two, p] - cells.speed[two, q])
    return duals


def _expand(
    g: GroupLP, cells: _Cells, plan: _Plan, sure: np.ndarray, others: np.ndarray, lp: LP, lp_cells: np.ndarray
) -> highspy.HighsBasis | None:
    """The small LP's basis as one of the group's LP: each sure unit as its shape says (_Plan),
    everything else as in the small LP."""
    small = lp.h.getBasis()
    col_small = np.array([int(s) for s in small.col_status], dtype=np.int64)
    row_small = np.array([int(s) for s in small.row_status], dtype=np.int64)
    n_pools, nu = len(g.model.pools), len(others)
    col = np.full(g.n_cells + 1, LOWER, dtype=np.int64)
    col[lp_cells] = col_small[:-1]
    col[g.col_t] = col_small[-1]
    one = np.flatnonzero(sure & (plan.kind == ONE))
    two = np.flatnonzero(sure & (plan.kind == TWO))
    col[cells.index[one, plan.p[one]]] = BASIC
    col[cells.index[two, plan.p[two]]] = BASIC
    col[cells.index[two, plan.q[two]]] = BASIC
    row = np.full(g.lp.n_rows, BASIC, dtype=np.int64)
    row[:n_pools] = row_small[:n_pools]
    row[n_pools + others] = row_small[n_pools : n_pools + nu]  # demand rows: class == unit
    row[n_pools + two] = UPPER
    # a unit's row in use: its level row, or its floor row when held (two rows per unit: the
    # other one has no lower bound and stays basic)
    in_use = np.where(g.unit_t_coef > 0, g.row_unit, g.row_floor) + np.arange(g.model.n_units)
    row[in_use[others]] = row_small[n_pools + nu :]
    row[in_use[one]] = LOWER
    row[in_use[two]] = LOWER
    if int((col == BASIC).sum() + (row == BASIC).sum()) != g.lp.n_rows:
        return None
    basis = highspy.HighsBasis()
    basis.col_status = [_STATUS[s] for s in col.tolist()]
    basis.row_status = [_STATUS[s] for s in row.tolist()]
    basis.valid = True
    basis.alien = False  # a square basis by construction: HiGHS need not repair it
    return basis
