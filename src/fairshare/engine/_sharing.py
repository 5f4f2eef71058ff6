"""policy.sharing surplus: guarantees first, then weights share only what is above them.

With `total` (the default) siblings share their parent's GPUs in proportion to their weights and
a guarantee is only a floor.  With `surplus` each node first gets its guarantee, and the weights
divide what is left above the guarantees: node u gets min(what it can use, base_u + a_u x t) for
the one level t that fills the parent, as Kueue's fair sharing (the share value is what a queue
borrows above its nominal quota, per unit of weight) and KAI's over-quota weights do.  The
water-filling is the same; only where each unit's level row starts moves (`offset`).

A node's base, per GPU type, is its guarantee or the sum of its children's bases, whichever is
larger: in Kueue a cohort's quota includes its queues' quotas, so unused quota stays in the
department first.  In effective GPUs a base counts each guaranteed GPU at the slowest speed its
node's requests have on that type: the throughput the guarantee secures whatever runs on it (with
one speed per type, as in Kueue and KAI, it is exact).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fairshare.engine._group import GroupModel
from fairshare.engine._problem import Problem
from fairshare.engine._result import Reason, ReasonCode


@dataclass
class SurplusBases:
    """Every node's base per GPU type (GPUs) and in effective GPUs, for one set of floors."""

    gpus: np.ndarray  # node x type
    value: np.ndarray  # node: effective GPUs

    @classmethod
    def of(cls, problem: Problem, floors: dict[tuple[int, int], float]) -> SurplusBases:
        pr = problem
        n_types = len(pr.types)
        gpus = np.zeros((pr.n_nodes, n_types))
        for (node, gpu), floor in floors.items():
            gpus[node, gpu] = max(floor, 0.0)
        own, below = gpus, np.zeros_like(gpus)
        for n in range(pr.n_nodes - 1, 0, -1):  # pre-order numbers: children come after parents
            total_n = np.maximum(own[n], below[n])
            below[int(pr.node_parent[n])] += total_n
        gpus = np.maximum(own, below)
        value = np.zeros(pr.n_nodes)
        cell_type = pr.pool_type[pr.cell_pool]
        for n in np.flatnonzero(gpus.sum(axis=1) > 0).tolist():
            cells = pr.subtree_cells(n)
            for g in np.flatnonzero(gpus[n] > 0).tolist():
                speeds = pr.cell_speed[cells[cell_type[cells] == g]]
                if len(speeds):
                    value[n] += gpus[n, g] * float(speeds.min())
        return cls(gpus, value)

    def offsets(self, model: GroupModel) -> np.ndarray:
        """Where each unit of `model` starts: a sub-node at its base, a request at 0."""
        out = np.zeros(model.n_units)
        for i, u in enumerate(model.units):
            if u.is_node:
                out[i] = self.value[u.index]
        return out


def surplus_note(problem: Problem, bases: SurplusBases, x: np.ndarray, request: int) -> str | None:
    """The split of the nearest guaranteed node on `request`'s branch: "node a: guarantee 3 +
    2 of the surplus by weight" (exact effective GPUs); None when no node on it has a base."""
    pr = problem
    node = next((n for n in pr.ancestors(int(pr.req_node[request])) if n and bases.value[n] > 0), None)
    if node is None:
        return None
    cells = pr.subtree_cells(node)
    got = float((x[cells] * pr.cell_speed[cells]).sum())
    base = float(bases.value[node])
    homogeneous = bool(np.all(pr.cell_speed == 1.0))
    parts = ", ".join(f"{_fmt(v)} {pr.types[g]}" for g, v in enumerate(bases.gpus[node].tolist()) if v > 0)
    worth = "" if homogeneous else f" (worth {_fmt(base)} effective GPUs)"
    unit = "GPUs" if homogeneous else "effective GPUs"
    name = pr.node_names[node]
    if got < base - 1e-6:
        return f"{name} uses {_fmt(got)} {unit} of its guarantee of {parts}{worth}; the rest is shared by weight"
    return f"{name} got its guarantee of {parts}{worth} + {_fmt(got - base)} {unit} of the surplus by weight"


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v - round(v)) < 1e-6 else f"{v:,.2f}"


NOTED = (ReasonCode.fair_share, ReasonCode.guarantee, ReasonCode.demand_met)


def with_surplus(
    problem: Problem, floors: dict[tuple[int, int], float], x: np.ndarray, reasons: list[Reason]
) -> list[Reason]:
    """Under policy.sharing surplus, each request's reason also says how its branch's guaranteed
    node got what it got (its guarantee + its part of the surplus); unchanged under total."""
    if not problem.surplus or not any(v > 0 for v in floors.values()):
        return reasons
    bases = SurplusBases.of(problem, floors)
    out = []
    for r, why in enumerate(reasons):
        note = surplus_note(problem, bases, x, r) if why.code in NOTED else None
        out.append(replace(why, text=f"{why.text}; {note}") if note else why)
    return out
