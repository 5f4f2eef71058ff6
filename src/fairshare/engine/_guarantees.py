"""Guarantees: how much of each one its subtree can use, and why a set cannot all hold."""

from __future__ import annotations

import numpy as np

from fairshare.engine._group import GroupLP, flat_model
from fairshare.engine._highs import INF
from fairshare.engine._problem import Problem
from fairshare.errors import InfeasibleGuarantees


def usable_floors(problem: Problem, demand: np.ndarray) -> dict[tuple[int, int], float]:
    """floor(n, g) = min(guarantee, the most type-g GPUs n's subtree can use on its own)."""
    floors: dict[tuple[int, int], float] = {}
    if not problem.guarantees:
        return floors
    g = _placement_lp(problem, demand, {})
    for node, gpu, amount in problem.guarantees:
        floors[(node, gpu)] = float(min(amount, _most_usable(problem, g, node, gpu)))
    return floors


def _placement_lp(problem: Problem, demand: np.ndarray, floors: dict[tuple[int, int], float]) -> GroupLP:
    """Every request over the whole cluster, holding `floors`, with no level to raise."""
    model = flat_model(problem, demand, floors)
    g = GroupLP(model, np.zeros(model.n_units))
    g.t_zero()
    return g


def _most_usable(problem: Problem, g: GroupLP, node: int, gpu: int) -> float:
    """The most whole type-`gpu` GPUs `node`'s subtree can hold in `g` (0 if `g` is infeasible)."""
    cost = np.zeros(g.lp.n_cols)
    cost[: g.n_cells] = problem.subtree_type_cells(node, gpu)[g.model.global_cells].astype(float)  # type: ignore[attr-defined]
    g.lp.set_cost(cost)
    usable = g.lp.objective() if g.lp.run() else 0.0
    return float(np.floor(usable + 1e-6))


def joint_floors(
    problem: Problem, demand: np.ndarray, floors: dict[tuple[int, int], float]
) -> dict[tuple[int, int], float]:
    """Floors that hold together: each as much of itself as the demand leaves once the floors
    before it hold, deepest node first (the most specific guarantee).  For a round after a
    minimum-size drop: `usable_floors` looks at one guarantee at a time, and with less demand
    two guarantees of different types may count on the same request."""
    held: dict[tuple[int, int], float] = {}
    for node, gpu in sorted(floors, key=lambda key: (-key[0], key[1])):
        if floors[(node, gpu)] <= 0:
            continue
        g = _placement_lp(problem, demand, held)
        held[(node, gpu)] = min(floors[(node, gpu)], _most_usable(problem, g, node, gpu))
    return held


def check_floors(problem: Problem, demand: np.ndarray, floors: dict[tuple[int, int], float]) -> None:
    """Raise InfeasibleGuarantees if the floors cannot all hold together."""
    if not any(v > 0 for v in floors.values()):
        return
    g = _placement_lp(problem, demand, floors)
    g.lp.set_cost(np.zeros(g.lp.n_cols))
    if not g.lp.run():
        raise explain_infeasible(problem, floors)


def explain_infeasible(problem: Problem, floors: dict[tuple[int, int], float]) -> InfeasibleGuarantees:
    pr = problem
    names = pr.node_names
    for gpu, gpu_name in enumerate(pr.types):
        held = {n: v for (n, g), v in floors.items() if g == gpu and v > 0}
        if not held:
            continue
        top = [n for n in held if not any(a in held for a in pr.ancestors(n)[1:])]
        pools = [pr.pool_names[p] for p in np.flatnonzero(pr.pool_type == gpu)]
        capacity = float(pr.pool_cap[pr.pool_type == gpu].sum())
        total = sum(held[n] for n in top)
        if total > capacity + 1e-9:
            parts = ", ".join(f"{names[n]} ({held[n]:g})" for n in top)
            return InfeasibleGuarantees(
                f"guarantees of {total:g} {gpu_name} GPUs ({parts}) exceed the {capacity:g} GPUs of pools "
                f"{', '.join(pools)}; lower a guarantee or add {gpu_name} capacity",
                [names[n] for n in top],
                pools,
            )
        for node, g, cap in pr.limits:
            if g != gpu:
                continue
            inside = [n for n in top if node <= n < pr.subtree_end[node]]
            below = sum(held[n] for n in inside)
            if below > cap + 1e-9:
                parts = ", ".join(f"{names[n]} ({held[n]:g})" for n in inside)
                return InfeasibleGuarantees(
                    f"guarantees of {below:g} {gpu_name} GPUs under node {names[node]} ({parts}) exceed its "
                    f"limit of {cap:g} {gpu_name}; raise the limit or lower a guarantee",
                    [names[node]] + [names[n] for n in inside],
                    pools,
                )
    nodes = sorted({names[n] for (n, _), v in floors.items() if v > 0})
    gpu_types = sorted({pr.types[g] for (_, g), v in floors.items() if v > 0})
    pools = [pr.pool_names[p] for p in range(len(pr.pool_names)) if pr.types[pr.pool_type[p]] in gpu_types]
    return InfeasibleGuarantees(
        f"the guarantees of nodes {', '.join(nodes)} cannot all be met at once: their requests compete for "
        f"the same pools ({', '.join(pools)}) under sites, speeds and limits; lower a guarantee or add capacity",
        nodes,
        pools,
    )


__all__ = ["InfeasibleGuarantees", "usable_floors", "joint_floors", "check_floors", "INF"]
