"""Weighted max-min fairness within one group, by progressive filling on its LP.

Each unit u must get e_u >= a_u * t, a_u = its weight share; t is raised as far as the LP
allows.  Units whose level row has a positive dual cannot rise further without lowering a
unit at or below t (complementary slackness), so they are frozen there and the rest keep
rising.  Done naively that is one LP per distinct level, and small requests that reach their
demand each stop at their own level.  So every step first water-fills *caps* in bulk: with
cap_u a valid upper bound on e_u and tau_u = cap_u / a_u, the largest t with
e_u >= a_u * min(t, tau_u) for all u is found by bisection over the sorted tau (each probe an
LP feasibility check, warm-started); units with tau_u below it provably freeze at their cap
(the solution found shows every other unit can exceed that level at the same time), and the
units that bind at t freeze there.  A handful of LPs covers thousands of capped units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fairshare.engine.group import GroupLP
from fairshare.engine.highs import INF

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


def _margin(v: float) -> float:
    """A frozen value, relaxed just beyond the solver's feasibility tolerance."""
    return max(0.0, v - MARGIN * (1.0 + abs(v)))


def water_fill_group(g: GroupLP, coeff: np.ndarray, potential: np.ndarray) -> GroupResult:
    m, lp = g.model, g.lp
    n = m.n_units
    caps = m.unit_caps()
    tau = np.where(coeff > 0, caps / np.maximum(coeff, 1e-300), 0.0)
    freezes: list[UnitFreeze | None] = [None] * n
    active = np.flatnonzero(potential & (caps > 1e-9))
    for u in np.flatnonzero(~(potential & (caps > 1e-9))):
        freezes[u] = UnitFreeze(0.0, 0.0, True, 0)
        _freeze(g, [u], [0.0])
    _activate(g, active)
    step = 0
    while len(active):
        step += 1
        # plain step: raise t with every active unit on its level row
        lp.set_col_bounds([g.col_t], [0.0], [INF])
        _run_or_relax(g, freezes)
        t = lp.values()[g.col_t]
        order = active[np.argsort(tau[active], kind="stable")]
        capped_below = order[tau[order] <= t * (1 + CAP_TOL) + 1e-12]
        capped = capped_below
        if len(capped_below) and len(capped_below) < len(order):
            try:
                t, capped = _bulk(g, order, tau, caps, coeff, t)
            except GroupInfeasible:  # numerically fragile probe: fall back to the plain step
                _set_capped(g, order, -1, caps)
                lp.set_col_bounds([g.col_t], [0.0], [INF])
                _run_or_relax(g, freezes)
                t = lp.values()[g.col_t]
        values, duals = lp.values(), lp.row_duals()
        tight = [int(m.pools[p]) for p in range(len(m.pools)) if abs(duals[p]) > DUAL_TOL]
        capped_set = set(capped.tolist())
        binding = [u for u in active if u not in capped_set and abs(duals[g.row_level + u]) > DUAL_TOL]
        if not binding and not capped_set:
            # degenerate duals: freeze the units sitting exactly at the level
            binding = [u for u in active if values[g.col_e + u] <= coeff[u] * t * (1 + 1e-7) + 1e-9]
        newly: list[int] = []
        vals: list[float] = []
        for u in capped:
            v = caps[u] if values[g.col_e + u] >= _margin(caps[u]) - 1e-12 else values[g.col_e + u]
            freezes[u] = UnitFreeze(t, v, True, step, tight)
            newly.append(int(u))
            vals.append(v)
        for u in binding:
            v = min(coeff[u] * t, values[g.col_e + u])
            freezes[u] = UnitFreeze(t, v, False, step, tight)
            newly.append(int(u))
            vals.append(v)
        _freeze(g, newly, vals)
        active = np.array([u for u in active if freezes[u] is None], dtype=int)

    # polish: everyone held at its fair value, use as many GPUs as possible (work conserving),
    # then prefer the faster placement; not needed when the last solution leaves no usable GPU idle
    if _idle_usable(g, lp.values()):
        cost = np.zeros(lp.n_cols)
        cost[: g.col_e] = 1.0
        cost[g.col_e:g.col_t] = 1e-3
        lp.set_cost(cost)
        lp.set_col_bounds([g.col_t], [0.0], [0.0])
        _run_or_relax(g, freezes)
    values = lp.values()
    return GroupResult(
        x=np.clip(values[: g.col_e], 0.0, None), e=values[g.col_e:g.col_t],
        freezes=freezes, lp_solves=lp.solves, steps=step,
    )


def _bulk(g: GroupLP, order: np.ndarray, tau: np.ndarray, caps: np.ndarray, coeff: np.ndarray,
          t_plain: float) -> tuple[float, np.ndarray]:
    """Largest t with e_u >= a_u*min(t, tau_u): bisection over the sorted tau, then one LP."""
    lp = g.lp
    # candidates: breakpoints above the plain level; index k means 'units order[:k+1] capped'
    lo = int(np.searchsorted(tau[order], t_plain * (1 + CAP_TOL) + 1e-12, side="right")) - 1
    hi = len(order) - 1  # is the last breakpoint feasible?

    def feasible(k: int) -> bool:
        _set_capped(g, order, k, caps)
        lp.set_col_bounds([g.col_t], [tau[order[k]]], [tau[order[k]]])
        return lp.run()

    if feasible(hi):  # every unit reaches its cap
        return float(tau[order[hi]]), order
    # gallop up from the plain level (usually few units cap per step), then bisect
    step = 1
    while lo + step < hi:
        if feasible(lo + step):
            lo += step
            step *= 2
        else:
            hi = lo + step
            break
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if feasible(mid):
            lo = mid
        else:
            hi = mid
    # segment LP: units order[:lo+1] capped, t between their last breakpoint and the next
    _set_capped(g, order, lo, caps)
    t_lo = tau[order[lo]] if lo >= 0 else 0.0
    t_hi = tau[order[lo + 1]] if lo + 1 < len(order) else INF
    lp.set_col_bounds([g.col_t], [t_lo], [t_hi])
    if not lp.run():
        raise _infeasible(g)
    t = float(lp.values()[g.col_t])
    capped = order[: lo + 1]
    if lo + 1 < len(order) and t >= t_hi * (1 - REL_TOL):  # reached the next cap exactly
        extra = order[lo + 1:][tau[order[lo + 1:]] <= t * (1 + REL_TOL)]
        capped = np.concatenate([capped, extra])
    return t, capped


def _idle_usable(g: GroupLP, values: np.ndarray) -> bool:
    """Does some class still want GPUs from a pool that has some left?"""
    m = g.model
    x = np.clip(values[: g.col_e], 0.0, None)
    used = np.bincount(m.cell_pool, weights=x, minlength=len(m.capacity))
    got = np.bincount(m.cell_class, weights=x, minlength=len(m.class_demand))
    idle = used < m.capacity - 1e-7
    hungry = got < m.class_demand - 1e-7
    return bool(np.any(idle[m.cell_pool] & hungry[m.cell_class]))


def _run_or_relax(g: GroupLP, freezes: list[UnitFreeze | None]) -> None:
    """Solve; if the frozen values are infeasible only by the solver's tolerances, hold
    every frozen unit a little further below its value (1e-6 + 1e-7 x value) and solve again."""
    if g.lp.run():
        return
    frozen = [u for u, f in enumerate(freezes) if f is not None]
    lower = [max(0.0, freezes[u].value - 1e-6 - 1e-7 * abs(freezes[u].value)) for u in frozen]  # type: ignore[union-attr]
    g.lp.set_col_bounds(g.col_e + np.asarray(frozen, dtype=int), lower, np.full(len(frozen), INF))
    if not g.lp.run():
        raise _infeasible(g)


def _set_capped(g: GroupLP, order: np.ndarray, k: int, caps: np.ndarray) -> None:
    """Units order[:k+1] held at their cap (level row off); the others on their level row."""
    capped, free = order[: k + 1], order[k + 1:]
    g.lp.set_row_bounds(g.row_level + capped, np.full(len(capped), -INF), np.full(len(capped), INF))
    g.lp.set_col_bounds(g.col_e + capped, [_margin(c) for c in caps[capped]], np.full(len(capped), INF))
    g.lp.set_row_bounds(g.row_level + free, np.zeros(len(free)), np.full(len(free), INF))
    g.lp.set_col_bounds(g.col_e + free, np.zeros(len(free)), np.full(len(free), INF))


def _activate(g: GroupLP, units: np.ndarray) -> None:
    g.lp.set_row_bounds(g.row_level + units, np.zeros(len(units)), np.full(len(units), INF))


def _freeze(g: GroupLP, units: list[int], values: list[float]) -> None:
    units_a = np.asarray(units, dtype=int)
    g.lp.set_row_bounds(g.row_level + units_a, np.full(len(units_a), -INF), np.full(len(units_a), INF))
    g.lp.set_col_bounds(g.col_e + units_a, [_margin(v) for v in values], np.full(len(units_a), INF))


class GroupInfeasible(Exception):
    """The group's bound rows (guarantees under limits/capacity) cannot all hold."""

    def __init__(self, parent: int):
        self.parent = parent
        super().__init__(f"group of node {parent} is infeasible")


def _infeasible(g: GroupLP) -> GroupInfeasible:
    return GroupInfeasible(g.model.parent)
