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

from fairshare.engine.group import GroupLP

DUAL_TOL = 1e-9
REL_TOL = 1e-9
MARGIN = 1e-9  # frozen values are held this far (relative) below their exact value
CAP_TOL = 1e-6  # a level this close to a unit's cap counts as reaching it


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
    freezes: list[UnitFreeze | None]
    lp_solves: int
    steps: int


def _margins(v: np.ndarray) -> np.ndarray:
    """Frozen values, each relaxed just beyond the solver's feasibility tolerance."""
    return np.maximum(0.0, v - MARGIN * (1.0 + np.abs(v)))


def water_fill_group(g: GroupLP, coeff: np.ndarray, potential: np.ndarray,
                     gallop: float | None = None) -> GroupResult:
    """Progressive filling of one group; `gallop` picks how the cap search guesses (see
    _level_with_caps)."""
    m, lp = g.model, g.lp
    n = m.n_units
    caps = m.unit_caps()
    tau = np.where(coeff > 0, caps / np.maximum(coeff, 1e-300), 0.0)
    freezes: list[UnitFreeze | None] = [None] * n
    has = potential & (caps > 1e-9)
    active = np.flatnonzero(has)
    dead = np.flatnonzero(~has)
    for u in dead:
        freezes[u] = UnitFreeze(0.0, 0.0, True, 0)
    g.floor(dead, np.zeros(len(dead)))
    frozen = np.zeros(n, bool)  # frozen in a step
    by_tau = active[np.argsort(tau[active], kind="stable")]  # sorted once; each step keeps its active part
    step = 0
    while len(active):
        step += 1
        order = by_tau[~frozen[by_tau]]
        k = _level_with_caps(g, freezes, order, tau, caps, gallop)
        capped, free = order[: k + 1], order[k + 1:]
        values, duals = lp.values(), lp.row_duals()
        t = g.t(values) if len(free) else float(tau[order[-1]])
        e = g.e(values)
        tight = m.pools[np.abs(duals[: len(m.pools)]) > DUAL_TOL].tolist()
        binding = free[np.abs(duals[g.row_unit + free]) > DUAL_TOL].tolist()
        if not binding and not len(capped):
            # degenerate duals: freeze the units sitting exactly at the level
            binding = [u for u in free if e[u] <= coeff[u] * t * (1 + 1e-7) + 1e-9]
        if not binding and not len(capped):  # never loop without progress: the lowest unit stops here
            binding = [min(free, key=lambda u: (e[u] / coeff[u], u))]
        newly: list[int] = []
        vals: list[float] = []
        for u in capped:
            freezes[u] = UnitFreeze(t, float(caps[u]), True, step, tight)
            newly.append(int(u))
            vals.append(float(caps[u]))
        for u in binding:
            v = float(min(coeff[u] * t, e[u]))
            freezes[u] = UnitFreeze(t, v, v >= caps[u] * (1 - CAP_TOL), step, tight)
            newly.append(int(u))
            vals.append(v)
        g.floor(np.asarray(newly, dtype=int), _margins(np.asarray(vals, dtype=float)))
        frozen[newly] = True
        active = active[~frozen[active]]

    # polish: everyone held at its fair value, use as many GPUs as possible (work conserving),
    # then prefer the faster placement.  For sub-nodes this picks the allotment their children
    # will share, so it always runs; a group of requests only needs it if a usable GPU is idle.
    if any(u.is_node for u in m.units) or _idle_usable(g, lp.values()):
        g.maximise_placement()
        _run_or_relax(g, freezes)
    values = lp.values()
    return GroupResult(x=g.x(values), e=g.e(values), freezes=freezes, lp_solves=lp.solves, steps=step)


def _level_with_caps(g: GroupLP, freezes: list[UnitFreeze | None], order: np.ndarray,
                     tau: np.ndarray, caps: np.ndarray, gallop: float | None = None) -> int:
    """Find k such that, with units order[:k+1] held at their caps and the rest on their level
    rows, the LP's best level t passes no further cap: the step's fixed point.  Leaves the LP
    solved with the fixed point's solution and returns k (-1: none capped).

    A solve that holds too few caps only says so (its t stops at the next cap), so guesses
    gallop: hold 1, 2, 4, ... caps beyond the last one passed, or, with `gallop`, every cap up
    to `gallop` x the last one passed (fewer LPs on teams' groups of many requests).  A solve that holds too many
    (t falls short of the last held cap) says more: its solution reaches t for everyone, so
    the fixed point's level is at least t and every cap up to t is held there.  And if the
    rows of the units it held beyond t have zero duals, its solution and duals are optimal for
    the LP that holds only the caps up to t (those rows are the only difference, and level
    rows are weaker than cap rows below the cap): that is the fixed point, with no re-solve.
    If the caps cannot all be held, bisect."""
    taus = tau[order]
    n = len(order)

    def passed(t: float) -> int:
        return int(np.searchsorted(taus, t * (1 + REL_TOL), side="right")) - 1

    level_coef = g.coeff[order]
    cap_floor = _margins(caps[order])
    position = np.arange(n)

    def solve(k: int, all_capped: bool = False) -> float:
        """Best level with order[:k+1] held at their caps; -1 if they cannot all be held."""
        held = order[: k + 1]
        is_held = position <= k
        # one pass over the rows, held units first, in the order of `order`
        g.set_rows(order, np.where(is_held, 0.0, level_coef), np.where(is_held, cap_floor, 0.0))
        g.t_zero() if all_capped else g.t_free()
        if k > lo:  # a guess: if the caps cannot all be held, hold fewer (no relaxing)
            if not g.lp.run():
                return -1.0
        else:
            _run_or_relax(g, freezes, (held, caps))
        return g.t(g.lp.values()) if not all_capped else float(taus[-1])

    lo, hi, k, stride = -1, n, -1, 1  # the fixed point holds order[:lo+1] and not order[hi]
    while True:
        t = solve(k, all_capped=k == n - 1)
        if k < 0 or t >= taus[k] * (1 - REL_TOL):  # holding order[:k+1] at their caps is consistent
            j = min(max(k, passed(t)), hi - 1)
            if j == k:
                return k
            lo = j
            if gallop:
                k = min(max(lo + 1, passed(taus[lo] * gallop)), hi - 1)
            else:
                k = min(lo + stride, hi - 1)
                stride *= 2
        elif k <= lo:  # known consistent, short only by solver tolerance: accept it
            return k
        elif t >= 0:  # held too many, but t is a lower bound on the fixed point's level
            hi, stride = k, 1
            j = passed(t)
            if lo <= j:
                beyond = g.row_unit + order[j + 1:k + 1]
                if not np.any(np.abs(g.lp.row_duals()[beyond]) > DUAL_TOL):
                    return j
                lo = j
            k = lo
        else:  # the caps cannot all be held: bisect
            hi, stride = k, 1
            k = lo + max(1, (hi - lo) // 2) if hi - lo > 1 else lo


def _idle_usable(g: GroupLP, values: np.ndarray) -> bool:
    """Does some class still want GPUs from a pool that has some left?"""
    m = g.model
    x = g.x(values)
    used = np.bincount(m.cell_pool, weights=x, minlength=len(m.capacity))
    got = np.bincount(m.cell_class, weights=x, minlength=len(m.class_demand))
    idle = used < m.capacity - 1e-7
    hungry = got < m.class_demand - 1e-7
    return bool(np.any(idle[m.cell_pool] & hungry[m.cell_class]))


def _run_or_relax(g: GroupLP, freezes: list[UnitFreeze | None],
                  held: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Solve; if the frozen values are infeasible only by the solver's tolerances, hold
    every frozen unit a little further below its value and solve again: 1e-8 (absolute and
    relative), then 1e-7, then 1e-6 + 1e-7 x value.  The slack stays for the rest of the group
    and the units still rising take it up, so it is kept as small as HiGHS allows."""
    if g.lp.run():
        return
    frozen = np.array([u for u, f in enumerate(freezes) if f is not None], dtype=int)
    values = np.array([freezes[u].value for u in frozen], dtype=float)  # type: ignore[union-attr]
    for absolute, relative in RELAX_STEPS:
        g.floor(frozen, _loose(values, absolute, relative))
        if held is not None and len(held[0]):  # units held at their cap in the current step
            units, caps = held
            g.floor(units, _loose(caps[units], absolute, relative))
        if g.lp.run():
            return
    raise _infeasible(g)


RELAX_STEPS = ((1e-8, 1e-8), (1e-7, 1e-7), (1e-6, 1e-7))


def _loose(v: np.ndarray, absolute: float, relative: float) -> np.ndarray:
    """`v` lowered by `absolute` + `relative` x |v|, not below 0."""
    return np.maximum(0.0, v - absolute - relative * np.abs(v))


class GroupInfeasible(Exception):
    """The group's bound rows (guarantees under limits/capacity) cannot all hold."""

    def __init__(self, parent: int):
        self.parent = parent
        super().__init__(f"group of node {parent} is infeasible")


def _infeasible(g: GroupLP) -> GroupInfeasible:
    return GroupInfeasible(g.model.parent)
