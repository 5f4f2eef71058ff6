"""Shared checks for the engine tests: feasibility, idle usable GPUs, and the max-min LPs.

Imported by the test modules as `from conftest import ...` (tests/ is on sys.path under
pytest's default rootdir import mode).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from fairshare.engine import Allocation
from fairshare.scenario import OrgNode, Pool, Request, Scenario, request_weight

TOL = 1e-4


def usable(req: Request, pool: Pool) -> bool:
    """Can `req` run on `pool` at all (a speed for its type, an allowed site, GPUs there)?"""
    if pool.gpus == 0:
        return False
    if req.speed is not None and pool.gpu not in req.speed:
        return False
    return req.sites is None or pool.site in req.sites


def speed(req: Request, pool: Pool) -> float:
    return 1.0 if req.speed is None else req.speed[pool.gpu]


def subtree_names(node: OrgNode) -> set[str]:
    return {n.name for n in node.walk()}


def ancestors(s: Scenario, team: str) -> list[OrgNode]:
    """The team's node, its parent, ..., the root."""

    def path(node: OrgNode) -> list[OrgNode] | None:
        if node.name == team:
            return [node]
        for c in node.children:
            p = path(c)
            if p is not None:
                return p + [node]
        return None

    found = path(s.org)
    assert found is not None
    return found


def type_used_in_subtree(s: Scenario, alloc: Allocation, node: OrgNode, gpu: str) -> float:
    names = subtree_names(node)
    pool_type = {p.name: p.gpu for p in s.pools}
    return sum(n for r in alloc.requests if r.team in names for p, n in r.gpus.items() if pool_type[p] == gpu)


def assert_feasible(s: Scenario, alloc: Allocation, tol: float = TOL) -> None:
    """No pool over capacity, no request over its gpus, only usable pools, limits respected."""
    pools = {p.name: p for p in s.pools}
    reqs = {r.id: r for r in s.requests}
    assert {r.id for r in alloc.requests} == set(reqs)
    for r in alloc.requests:
        assert r.total <= reqs[r.id].gpus + tol, f"{r.id} gets {r.total} > gpus {reqs[r.id].gpus}"
        for p, n in r.gpus.items():
            assert n >= -tol
            assert usable(reqs[r.id], pools[p]), f"{r.id} got {n} GPUs on unusable pool {p}"
        eff = sum(n * speed(reqs[r.id], pools[p]) for p, n in r.gpus.items())
        assert abs(eff - r.effective) <= max(tol, 1e-9) * max(1.0, eff)  # float sums differ in order
    for p in s.pools:
        used = sum(r.gpus.get(p.name, 0.0) for r in alloc.requests)
        assert used <= p.gpus + tol, f"pool {p.name} over capacity: {used} > {p.gpus}"
    for node in s.org.walk():
        for gpu, cap in node.limit.items():
            used = type_used_in_subtree(s, alloc, node, gpu)
            assert used <= cap + tol, f"node {node.name} over its {gpu} limit: {used} > {cap}"


def limit_binds(s: Scenario, alloc: Allocation, team: str, gpu: str, tol: float = TOL) -> bool:
    for node in ancestors(s, team):
        cap = node.limit.get(gpu)
        if cap is not None and type_used_in_subtree(s, alloc, node, gpu) >= cap - tol:
            return True
    return False


def idle_usable(
    s: Scenario, alloc: Allocation, min_idle: float = TOL, min_hunger: float = TOL
) -> list[tuple[str, str]]:
    """(request, pool) pairs where the pool has idle GPUs the request could use and wants,
    and no limit on the request's branch for that type is already reached."""
    reqs = {r.id: r for r in s.requests}
    out = []
    for p in s.pools:
        idle = p.gpus - sum(r.gpus.get(p.name, 0.0) for r in alloc.requests)
        if idle < min_idle:
            continue
        for r in alloc.requests:
            req = reqs[r.id]
            if usable(req, p) and r.total < req.gpus - min_hunger and not limit_binds(s, alloc, r.team, p.gpu):
                out.append((r.id, p.name))
    return out


class FlatLP:
    """Variables x[r, p] over usable cells of a flat instance (requests on the root, no limits)."""

    def __init__(self, s: Scenario):
        self.s = s
        self.cells = [(i, j) for i, req in enumerate(s.requests) for j, p in enumerate(s.pools) if usable(req, p)]
        self.w = np.array([request_weight(r, s.policy) for r in s.requests])
        n = len(self.cells)
        self.speed = np.array([speed(s.requests[i], s.pools[j]) for i, j in self.cells])
        rows, rhs = [], []
        for j, p in enumerate(s.pools):
            rows.append([1.0 if cj == j else 0.0 for _, cj in self.cells])
            rhs.append(p.gpus)
        for i, r in enumerate(s.requests):
            rows.append([1.0 if ci == i else 0.0 for ci, _ in self.cells])
            rhs.append(r.gpus)
        self.a_cap = np.array(rows).reshape(len(rows), n)
        self.b_cap = np.array(rhs, dtype=float)

    def e_row(self, i: int) -> np.ndarray:
        return np.array([self.speed[k] if ci == i else 0.0 for k, (ci, _) in enumerate(self.cells)])

    def max_min_t(self) -> float:
        """Gavel's single LP: maximise t s.t. E_r >= w_r t for every request, pools, demands."""
        n = len(self.cells)
        if any(not self.e_row(i).any() for i in range(len(self.s.requests))):
            return 0.0  # a request with no usable pool holds t at 0
        c = np.zeros(n + 1)
        c[-1] = -1.0
        a = [np.append(row, 0.0) for row in self.a_cap]
        b = list(self.b_cap)
        for i in range(len(self.s.requests)):
            a.append(np.append(-self.e_row(i), self.w[i]))
            b.append(0.0)
        res = linprog(c, A_ub=np.array(a), b_ub=np.array(b), bounds=[(0, None)] * (n + 1), method="highs")
        assert res.status == 0, res.message
        return float(res.x[-1])

    def best_e_keeping(self, i: int, keep: dict[int, float]) -> float:
        """max E_i subject to E_j >= keep[j], pools and demands."""
        n = len(self.cells)
        if n == 0:
            return 0.0
        a = [row for row in self.a_cap]
        b = list(self.b_cap)
        for j, v in keep.items():
            a.append(-self.e_row(j))
            b.append(-v)
        res = linprog(
            -self.e_row(i),
            A_ub=np.array(a).reshape(len(a), n),
            b_ub=np.array(b),
            bounds=[(0, None)] * n,
            method="highs",
        )
        assert res.status == 0, res.message
        return float(-res.fun)
