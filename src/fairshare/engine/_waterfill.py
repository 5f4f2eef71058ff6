"""Weighted max-min fairness within one group, by progressive filling on its LP.

Each unit u must get e_u >= a_u * t, a_u = its weight share; t is raised as far as the LP
allows.  Units whose level row has a positive dual cannot rise further without lowering a
unit at or below t (complementary slackness), so they are frozen there and the rest keep
rising.  Done naively that is one LP per distinct level, and small requests that reach their
demand each stop at their own level.  So every step water-fills *caps* in bulk: with cap_u a
valid upper bound on e_u and tau_u = cap_u / a_u, each step finds the largest t with
e_u >= a_u * min(t, tau_u) for all u by a monotone fixed point: solve with the units whose
tau_u <= t held at their cap and the others on their level row; if the new t passes more caps,
hold those too and solve again.  When no new cap is passed, t is the step's level: units held
at their cap provably freeze there (the solution shows every other unit can exceed that level
at the same time) and the units whose level row binds freeze at t.  A few LPs per step cover
any number of capped units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fairshare.engine._crash import SAMPLE_MAX, SAMPLE_MIN
from fairshare.engine._group import GroupLP, GroupModel, loosened
from fairshare.errors import InternalError, SolverError

DUAL_TOL = 1e-9
REL_TOL = 1e-9
MARGIN = 1e-9  # frozen values are held this far (relative) below their exact value
CAP_TOL = 1e-6  # a level this close to a unit's cap counts as reaching it
START_SLACK = (1e-7, 1e-7)  # (absolute, relative): how far below its base a unit's level row starts
# a first step guessed from a sample (estimate_level) holds the caps up to this x the guess: a little
# high, as the sample's level is off by about 1% either way, and an LP holding too few caps stops at a
# unit's cap with no pool binding (no prices: no crash basis, interior point), while one holding a
# few too many is re-solved warm
ESTIMATE_HIGH = 1.03
ESTIMATE_RATIO = 1.02  # and, if that was too few, climbs by this factor (squared at each solve)
PROBES = 6  # the most crash probes before a large flat group's first solve (_CapSearch.probe)


@dataclass
class UnitFreeze:
    """Why a unit stopped: at its cap (it could use no more) or at the group level t."""

    level: float  # group level t (weight share units)
    value: float  # effective allocation
    at_cap: bool
    step: int
    tight_pools: list[int] = field(default_factory=list)  # global pool ids binding at that step


@dataclass
class GroupResult:
    x: np.ndarray  # per cell
    e: np.ndarray  # per unit
    freezes: list[UnitFreeze]  # every unit's, once the group is filled
    lp_solves: int
    steps: int


def margins(v: np.ndarray) -> np.ndarray:
    """Frozen values, each relaxed just beyond the solver's feasibility tolerance."""
    return np.maximum(0.0, v - MARGIN * (1.0 + np.abs(v)))


_margins = margins


def water_fill_group(
    g: GroupLP,
    coeff: np.ndarray,
    potential: np.ndarray,
    ratio: float | None = None,
    held: np.ndarray | None = None,
    primal_after_first: bool = False,
    offset: np.ndarray | None = None,
) -> GroupResult:
    """Progressive filling of one group; with `ratio` the cap search comes from above
    (_CapSearch.from_above), else it gallops from below.  `held`: a floor per unit for the
    units that do not rise (fixed at an earlier level), 0 for the others.  primal_after_first:
    re-solve with primal simplex once the first step is done (GroupLP.prefer_primal).
    `offset`: where each unit's level row starts (e_u >= offset_u + a_u t; policy.sharing
    surplus, engine/_sharing.py), 0 for all when absent: the units then share by weight only
    what is above their offsets."""
    m, lp = g.model, g.lp
    n = m.n_units
    caps = m.unit_caps()
    # a unit cannot start above its cap; and its base, a floor the parent's LP held only to the solver's
    # tolerances, starts a little below it (as relaxed guarantees do) so that t = 0 stays feasible
    start = np.zeros(n) if offset is None else loosened(np.minimum(offset, caps), *START_SLACK)
    tau = np.where(coeff > 0, (caps - start) / np.maximum(coeff, 1e-300), 0.0)
    freezes: list[UnitFreeze | None] = [None] * n
    has = potential & (caps > 1e-9)
    active = np.flatnonzero(has)
    dead = np.flatnonzero(~has)
    base = np.zeros(n) if held is None else held
    for u in dead:
        freezes[u] = UnitFreeze(0.0, float(base[u]), True, 0)
    g.floor(dead, base[dead])
    frozen = np.zeros(n, bool)  # frozen in a step
    by_tau = active[np.argsort(tau[active], kind="stable")]  # sorted once; each step keeps its active part
    step = 0
    t_level = 0.0  # the last step's level
    search = _CapSearch(g, freezes, tau, caps, start)
    first_ratio = ratio
    if ratio and offset is None and g.lp.crash is not None:  # a large flat group: guess the first caps from a sample
        estimate = estimate_level(g, active, caps)
        if estimate:
            first_ratio = ESTIMATE_RATIO
            t_level = estimate * ESTIMATE_HIGH / first_ratio
    while len(active):
        step += 1
        order = by_tau[~frozen[by_tau]]
        if primal_after_first and step == 2:
            g.prefer_primal()
        k = search.fixed_point(order, first_ratio if step == 1 else ratio, t_level)
        capped, free = order[: k + 1], order[k + 1 :]
        values, duals = lp.values(), lp.row_duals()
        t = g.t(values) if len(free) else float(tau[order[-1]])
        t_level = t
        e = g.e(values)
        tight = m.pools[np.abs(duals[: len(m.pools)]) > DUAL_TOL].tolist()
        binding = free[np.abs(g.unit_duals(duals, free)) > DUAL_TOL].tolist()
        if not binding and not len(capped):
            # degenerate duals: freeze the units sitting exactly at the level
            binding = [u for u in free if e[u] <= (start[u] + coeff[u] * t) * (1 + 1e-7) + 1e-9]
        if not binding and not len(capped):  # never loop without progress: the lowest unit stops here
            binding = [min(free, key=lambda u: ((e[u] - start[u]) / coeff[u], u))]
        newly: list[int] = []
        vals: list[float] = []
        for u in capped:
            freezes[u] = UnitFreeze(t, float(caps[u]), True, step, tight)
            newly.append(int(u))
            vals.append(float(caps[u]))
        for u in binding:
            v = float(min(start[u] + coeff[u] * t, e[u]))
            freezes[u] = UnitFreeze(t, v, v >= caps[u] * (1 - CAP_TOL), step, tight)
            newly.append(int(u))
            vals.append(v)
        g.floor(np.asarray(newly, dtype=int), _margins(np.asarray(vals, dtype=float)))
        frozen[newly] = True
        active = active[~frozen[active]]

    # polish: everyone held at its fair value, use as many GPUs as possible (work conserving),
    # then prefer the faster placement.  For sub-nodes this picks the allotment their children
    # will share, so it always runs; a group of requests only needs it if a usable GPU is idle.
    if not lp.solves:  # no unit could rise (every cap below 1e-9 GPUs, in a leftover round): no solution yet
        g.t_zero()
        _run_or_relax(g, freezes)
    if any(u.is_node for u in m.units) or _idle_usable(g, lp.values()):
        g.maximise_placement()
        _run_or_relax(g, freezes)
    values = lp.values()
    settled = [f for f in freezes if f is not None]
    assert len(settled) == n, "every unit is dead or frozen once none is active"
    return GroupResult(x=g.x(values), e=g.e(values), freezes=settled, lp_solves=lp.solves, steps=step)


def estimate_level(g: GroupLP, units: np.ndarray, caps: np.ndarray) -> float | None:
    """An estimate of the first step's level of a large flat group: the cap search's fixed
    point on an evenly spaced sample of the units sharing the same fraction of the pools (a
    group of its own, searched as the group's steps are: galloping over the sample's caps,
    each solve warm).  The group's first solve then holds about the right caps: one cold solve
    (crash basis) instead of a cold solve holding none and warm ones changing thousands of rows.
    `units`: the units that rise (on their level rows, with coefficients g.coeff).  None: no
    estimate (the search starts from nothing)."""
    units = np.sort(units)
    if len(units) < 2 * SAMPLE_MIN:
        return None
    size = min(SAMPLE_MAX, max(SAMPLE_MIN, len(units) // 16))
    sample = units[:: max(1, len(units) // size)]
    coef = g.coeff[sample]
    sg = GroupLP(_sample_model(g.model, sample, coef.sum() / g.coeff[units].sum()), coef)
    sg.prefer_primal()
    sg.lp.crash = None  # the sample is small: no crash (it would sample again)
    tau = caps[sample] / coef
    freezes: list[UnitFreeze | None] = [None] * len(sample)
    search = _CapSearch(sg, freezes, tau, caps[sample], np.zeros(len(sample)))
    order = np.argsort(tau, kind="stable")
    try:
        k = search.fixed_point(order, None, 0.0)
    except GroupInfeasible:
        return None
    t = sg.t(sg.lp.values()) if k < len(sample) - 1 else float(tau.max())
    return t if t > 0 else None


def _sample_model(m: GroupModel, units: np.ndarray, fraction: float) -> GroupModel:
    """The flat group `m` (each unit one class, no bound rows) restricted to `units`, with
    `fraction` of each pool."""
    local = np.full(m.n_units, -1)
    local[units] = np.arange(len(units))
    cells = np.flatnonzero(local[m.class_unit[m.cell_class]] >= 0)
    return GroupModel(
        parent=m.parent,
        units=[m.units[u] for u in units.tolist()],
        weights=m.weights[units],
        pools=m.pools,
        capacity=m.capacity * fraction,
        class_unit=np.arange(len(units)),
        class_demand=m.class_demand[units],
        cell_class=local[m.cell_class[cells]],
        cell_pool=m.cell_pool[cells],
        cell_speed=m.cell_speed[cells],
    )


class _CapSearch:
    """The cap search of each step of a group: find k such that, with units order[:k+1] held
    at their caps and the rest on their level rows (LP(k)), the LP's best level t passes no
    further cap: the step's fixed point.  The group keeps one, so a step can use what earlier
    steps learnt.

    A solve that holds too few caps only says so (its t stops at the next cap).  A solve that
    holds too many (t falls short of the last held cap) says more: its solution reaches t for
    everyone, so the fixed point's level is at least t and every cap up to t is held there.
    And if the rows of the units it held beyond t have zero duals, its solution and duals are
    optimal for the LP that holds only the caps up to t (those rows are the only difference,
    and level rows are weaker than cap rows below the cap): that is the fixed point, with no
    re-solve.  A solve whose caps cannot all be held stays so for the rest of the group (the
    frozen units' floors only rise), so later steps do not guess all of them held again."""

    def __init__(
        self, g: GroupLP, freezes: list[UnitFreeze | None], tau: np.ndarray, caps: np.ndarray, start: np.ndarray
    ):
        self.g, self.freezes, self.tau, self.caps, self.start_all = g, freezes, tau, caps, start
        self.cap_floor_all = _margins(caps)
        self.unholdable: np.ndarray | None = None  # units the last infeasible solve held

    def fixed_point(self, order: np.ndarray, ratio: float | None, t_prev: float) -> int:
        """Leaves the LP solved with the step's fixed point and returns its k (-1: none
        capped): searched from_above with `ratio` and the previous step's level `t_prev`, or,
        without `ratio`, galloping."""
        self.order, self.taus, self.n = order, self.tau[order], len(order)
        self.level_coef = self.g.coeff[order]
        self.cap_floor = self.cap_floor_all[order]
        self.start = self.start_all[order]
        self.position = np.arange(self.n)
        self.lo = -1  # the fixed point holds order[:lo+1] ...
        self.hi = self.n  # ... and not order[hi]
        if ratio:
            return self.from_above(ratio, t_prev)
        return self.galloping()

    def _known_unholdable(self) -> int:
        """The first position k whose LP(k) an earlier step found infeasible (n: none).  Only
        a hint for guesses, never a proof: a relaxed solve lowers frozen floors a little."""
        units = self.unholdable
        if units is None:
            return self.n
        where = np.full(len(self.tau), -1)
        where[self.order] = self.position
        at = where[units]
        gone = units[at < 0]
        if any(not self.freezes[u].at_cap for u in gone.tolist()):
            self.unholdable = None  # a unit frozen below its cap: the infeasibility may be gone
            return self.n
        return int(at.max()) if len(gone) < len(units) else self.n

    def passed(self, t: float) -> int:
        """The last position whose cap level t reaches."""
        return int(np.searchsorted(self.taus, t * (1 + REL_TOL), side="right")) - 1

    def hold(self, k: int) -> None:
        """The LP's rows for LP(k): order[:k+1] held at their caps, the rest on their level rows."""
        is_held = self.position <= k
        # one pass over the rows, held units first, in the order of `order`
        self.g.set_rows(
            self.order, np.where(is_held, 0.0, self.level_coef), np.where(is_held, self.cap_floor, self.start)
        )
        self.g.t_zero() if k == self.n - 1 else self.g.t_free()

    def solve(self, k: int) -> float:
        """Best level with order[:k+1] held at their caps; -1 if they cannot all be held."""
        g, all_capped = self.g, k == self.n - 1
        self.hold(k)
        if k > self.lo:  # a guess: if the caps cannot all be held, hold fewer (no relaxing)
            if not g.lp.run():
                self.unholdable = self.order[: k + 1].copy()
                return -1.0
        else:
            _run_or_relax(g, self.freezes, (self.order[: k + 1], self.caps))
        return g.t(g.lp.values()) if not all_capped else float(self.taus[-1])

    def consistent(self, k: int, t: float) -> bool:
        """Does LP(k)'s level reach every cap it holds?"""
        return k < 0 or t >= self.taus[k] * (1 - REL_TOL)

    def beyond_free(self, j: int, k: int) -> bool:
        """After LP(k) fell short, at a level that passes order[:j+1]: do the rows of the units
        it held beyond that level all have zero duals (so it solved LP(j) too)?"""
        beyond = self.order[j + 1 : k + 1]
        return not np.any(np.abs(self.g.unit_duals(self.g.lp.row_duals(), beyond)) > DUAL_TOL)

    def climbed(self, k: int, t: float) -> bool:
        """LP(k) held no cap too many and reached t: True if that is the fixed point (t passes
        no further cap); else keep what it proves (the fixed point holds the caps t passes)."""
        j = min(max(k, self.passed(t)), self.hi - 1)
        if j == k:
            return True
        self.lo = j
        return False

    def fell_short(self, k: int, t: float) -> int | None:
        """LP(k) held too many caps and reached t: keep the bounds that proves (the fixed
        point holds fewer than k+1 caps, and at least those t passes).  Returns the fixed
        point if LP(k)'s solution already is it (beyond_free), else None."""
        self.hi = k
        j = self.passed(t)
        if self.lo <= j:
            if self.beyond_free(j, k):
                return j
            self.lo = j
        return None

    def galloping(self) -> int:
        """Hold 1, 2, 4, ... caps beyond the last one passed; after a solve that held too many,
        go back to what it proved and gallop again; if the caps cannot all be held, bisect."""
        k, stride = -1, 1
        while True:
            t = self.solve(k)
            if self.consistent(k, t):
                if self.climbed(k, t):
                    return k
                k = min(self.lo + stride, self.hi - 1)
                stride *= 2
            elif k <= self.lo:  # known consistent, short only by solver tolerance: accept it
                return k
            elif t >= 0:  # held too many, but t is a lower bound on the fixed point's level
                stride = 1
                done = self.fell_short(k, t)
                if done is not None:
                    return done
                k = self.lo
            else:  # the caps cannot all be held: bisect
                self.hi, stride = k, 1
                k = self.lo + max(1, (self.hi - self.lo) // 2) if self.hi - self.lo > 1 else self.lo

    def from_above(self, ratio: float, t_prev: float) -> int:
        """Guess high, then come down by the duals.  A guess that holds too many proves a
        lower bound t_k (see the class) and, by its duals, an upper bound: lowering the floor
        of a held unit u raises t by at most |y_u| per unit (the LP's value is concave in its
        row bounds), and at the fixed point each unit held beyond its level t* only needs
        a_u t*, so t* <= t_k + sum |y_u| a_u (tau_u - t*) over them (upper_bound).  The next
        guess holds every cap up to that bound: never too few, so every further solve either
        is the fixed point or proves a tighter pair of bounds (Newton's method on a concave
        function, from above).  The first guess holds the caps up to `ratio` x the previous
        step's level; each solve that holds too few squares the factor (ratio, ratio^2,
        ratio^4, ...); after one whose caps cannot all be held, the next guess holds the caps
        up to the geometric mean of the best lower bound and the cap it failed on."""
        unholdable = self._known_unholdable()
        k = min(self.passed(t_prev * ratio), unholdable - 1, self.hi - 1)
        if self.g.lp.solves == 0 and self.g.lp.crash is not None:
            k = self.probe(k, ratio)
        growth, t_low = ratio, t_prev
        while True:
            t = self.solve(k)
            if self.consistent(k, t):
                if self.climbed(k, t):
                    return k
                t_low = max(t_low, t)
                k = min(max(self.lo + 1, min(self.passed(t * growth), unholdable - 1)), self.hi - 1)
                growth *= growth
            elif k <= self.lo:  # known consistent, short only by solver tolerance: accept it
                return k
            elif t >= 0:  # held too many: t is a lower bound, the duals give an upper one
                t_low = max(t_low, t)
                done = self.fell_short(k, t)
                if done is not None:
                    return done
                k = min(max(self.lo, self.passed(self.upper_bound(k, t))), self.hi - 1)
            else:  # the caps cannot all be held
                self.hi = k
                k = (
                    self.lo
                    if k - self.lo <= 1
                    else min(max(self.lo + 1, self.passed(np.sqrt(max(t_low, 1e-300) * self.taus[k]))), k - 1)
                )

    def probe(self, k: int, ratio: float) -> int:
        """Before a large flat group's first solve: move k towards the fixed point with the
        crash's small LPs (engine/_crash.py), whose level is LP(k)'s exact level once its plan
        holds, at a few hundredths of a solve of the group's LP each; a warm re-solve of that
        LP after changing a few hundred caps costs more than the cold solve from a crash basis.
        Each probe's level bounds the fixed point as a solve's would (climbed, fell_short
        without the duals); a probe that stops at a unit's cap (no pool binds: too few caps
        held) climbs by `ratio`, squared each time.  Returns the k to solve; when a probe's
        level is the fixed point, the group's LP starts from that probe's basis."""
        g, growth = self.g, ratio
        default = g.lp.crash
        for _ in range(PROBES):
            self.hold(k)
            try:
                basis = default() if default is not None else None
            except SolverError:
                basis = None
            end = g.crash_end
            if end is None:  # no plan: leave it to the solver (no second try at the crash)
                g.lp.crash = None
                g.prices = None
                return k
            y, t, limited, duals = end
            if limited:  # too few caps held (the prices of the last plan stay the best guess)
                self.lo = min(k, self.hi - 1)
                k_next = (self.lo + self.hi) // 2 if self.hi < self.n else self.passed(t * growth)
                growth *= growth
            else:
                g.prices = (y, t)
                if self.consistent(k, t):
                    if self.climbed(k, t):
                        g.lp.crash = lambda found=basis: found  # LP(k) is the fixed point: certify this basis
                        g.prices = None
                        return k
                    k_next = self.lo
                else:  # held too many: the fixed point holds fewer, and at least those t passes
                    self.hi = k
                    self.lo = max(self.lo, min(self.passed(t), k - 1))
                    k_next = self.passed(self.upper_bound(k, t, duals))
            k = min(max(k_next, self.lo), self.hi - 1)
        g.prices = None
        return k

    def upper_bound(self, k: int, t: float, duals: np.ndarray | None = None) -> float:
        """The largest t' with t' <= t + sum |y_u| a_u (tau_u - t') over the units of
        order[:k+1] whose tau_u > t' (y: LP(k)'s row duals, or each unit row's `duals`): a
        bound on the fixed point's level."""
        j = self.passed(t)
        held = slice(j + 1, k + 1)
        if duals is None:
            y = np.abs(self.g.unit_duals(self.g.lp.row_duals(), self.order[held]))
        else:
            y = np.abs(duals[self.order[held]])
        ya = y * self.level_coef[held]
        taus = self.taus[held]
        # with the units from position i on still above t': t' = (t + sum ya tau) / (1 + sum ya)
        num = t + np.cumsum((ya * taus)[::-1])[::-1]
        den = 1.0 + np.cumsum(ya[::-1])[::-1]
        cand = num / den
        below = np.r_[t, taus[:-1]]
        ok = (cand >= below * (1 - REL_TOL)) & (cand <= taus * (1 + REL_TOL))
        return float(cand[ok][0]) if ok.any() else float(taus[-1])


def _idle_usable(g: GroupLP, values: np.ndarray) -> bool:
    """Does some class still want GPUs from a pool that has some left?"""
    m = g.model
    x = g.x(values)
    used = np.bincount(m.cell_pool, weights=x, minlength=len(m.capacity))
    got = np.bincount(m.cell_class, weights=x, minlength=len(m.class_demand))
    idle = used < m.capacity - 1e-7
    hungry = got < m.class_demand - 1e-7
    return bool(np.any(idle[m.cell_pool] & hungry[m.cell_class]))


def _run_or_relax(
    g: GroupLP, freezes: list[UnitFreeze | None], held: tuple[np.ndarray, np.ndarray] | None = None
) -> None:
    """Solve; if the frozen values are infeasible only by the solver's tolerances, hold
    every frozen unit (and every guarantee floor, which the parent's LP held only to the same
    tolerances) a little further below its value and solve again: 1e-8 (absolute and
    relative), then 1e-7, then 1e-6 + 1e-7 x value.  The slack stays for the rest of the group
    and the units still rising take it up, so it is kept as small as HiGHS allows."""
    if g.lp.run():
        return
    frozen = np.array([u for u, f in enumerate(freezes) if f is not None], dtype=int)
    values = np.array([freezes[u].value for u in frozen], dtype=float)
    for absolute, relative in RELAX_STEPS:
        g.floor(frozen, loosened(values, absolute, relative))
        if held is not None and len(held[0]):  # units held at their cap in the current step
            units, caps = held
            g.floor(units, loosened(caps[units], absolute, relative))
        g.loosen_guarantees(absolute, relative)
        if g.lp.run():
            return
    raise _infeasible(g)


RELAX_STEPS = ((1e-8, 1e-8), (1e-7, 1e-7), (1e-6, 1e-7))


class GroupInfeasible(InternalError):
    """The group's bound rows (guarantees under limits/capacity) cannot all hold."""

    def __init__(self, parent: int):
        self.parent = parent
        super().__init__(f"group of node {parent} is infeasible")


def _infeasible(g: GroupLP) -> GroupInfeasible:
    return GroupInfeasible(g.model.parent)
