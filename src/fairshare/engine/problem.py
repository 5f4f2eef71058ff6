"""Compile a Scenario into flat arrays the solver works on.

Nodes are numbered in pre-order, so the subtree of node n is the index range
[n, subtree_end[n]); requests point at their team's node number.  A *cell* is one
(request, pool) pair the request may use; only cells become LP variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from fairshare.scenario import Scenario, request_weight


@dataclass
class Problem:
    types: list[str]
    pool_names: list[str]
    pool_type: np.ndarray  # int, index into types
    pool_site: list[str]
    pool_cap: np.ndarray  # float
    node_names: list[str]
    node_parent: np.ndarray  # int, -1 for the root
    node_depth: np.ndarray  # int, root is 0
    node_weight: np.ndarray
    subtree_end: np.ndarray  # int, exclusive
    req_ids: list[str]
    req_node: np.ndarray  # int
    req_demand: np.ndarray  # float (GPUs)
    req_weight: np.ndarray  # float, after priority and urgency
    req_min: np.ndarray  # float, 0 when absent
    cell_req: np.ndarray
    cell_pool: np.ndarray
    cell_speed: np.ndarray
    limits: list[tuple[int, int, float]] = field(default_factory=list)  # (node, type, cap)
    guarantees: list[tuple[int, int, float]] = field(default_factory=list)  # (node, type, floor)

    @property
    def n_nodes(self) -> int:
        return len(self.node_names)

    @property
    def n_requests(self) -> int:
        return len(self.req_ids)

    @property
    def n_cells(self) -> int:
        return len(self.cell_req)

    def in_subtree(self, node: int) -> np.ndarray:
        """Boolean mask over requests: does the request hang in node's subtree?"""
        return (self.req_node >= node) & (self.req_node < self.subtree_end[node])

    def subtree_type_cells(self, node: int, gpu_type: int) -> np.ndarray:
        """Boolean mask over cells: requests in node's subtree on pools of one GPU type (the
        cells a limit or a guarantee of that node and type counts)."""
        cell_node = self.req_node[self.cell_req]
        return ((cell_node >= node) & (cell_node < self.subtree_end[node])
                & (self.pool_type[self.cell_pool] == gpu_type))

    @cached_property
    def cells_of_request(self) -> list[np.ndarray]:
        """Cell indices of each request."""
        order = np.argsort(self.cell_req, kind="stable")
        bounds = np.searchsorted(self.cell_req[order], np.arange(self.n_requests + 1))
        return [order[bounds[r]:bounds[r + 1]] for r in range(self.n_requests)]

    def ancestors(self, node: int) -> list[int]:
        """node, its parent, ..., the root."""
        out = []
        while node >= 0:
            out.append(node)
            node = int(self.node_parent[node])
        return out


def compile_scenario(scenario: Scenario) -> Problem:
    types = scenario.gpu_types
    type_index = {t: i for i, t in enumerate(types)}
    pools = scenario.pools

    nodes = scenario.nodes()
    index = {n.name: i for i, n in enumerate(nodes)}
    parent = np.full(len(nodes), -1, dtype=np.int64)
    depth = np.zeros(len(nodes), dtype=np.int64)
    for i, node in enumerate(nodes):
        for child in node.children:
            parent[index[child.name]] = i
            depth[index[child.name]] = depth[i] + 1
    end = np.arange(1, len(nodes) + 1, dtype=np.int64)
    for i in range(len(nodes) - 1, 0, -1):  # children come after parents in pre-order
        end[parent[i]] = max(end[parent[i]], end[i])

    reqs = scenario.requests
    cell_req: list[int] = []
    cell_pool: list[int] = []
    cell_speed: list[float] = []
    for r, req in enumerate(reqs):
        allowed_sites = set(req.sites) if req.sites is not None else None
        for p, pool in enumerate(pools):
            speed = 1.0 if req.speed is None else req.speed.get(pool.gpu)
            if speed is None or (allowed_sites is not None and pool.site not in allowed_sites):
                continue
            if pool.gpus == 0:
                continue
            cell_req.append(r)
            cell_pool.append(p)
            cell_speed.append(float(speed))

    limits = [(index[n.name], type_index[g], float(v)) for n in nodes for g, v in n.limit.items()]
    guarantees = [(index[n.name], type_index[g], float(v)) for n in nodes for g, v in n.guarantee.items() if v > 0]
    return Problem(
        types=types,
        pool_names=[p.name for p in pools],
        pool_type=np.array([type_index[p.gpu] for p in pools], dtype=np.int64),
        pool_site=[p.site for p in pools],
        pool_cap=np.array([p.gpus for p in pools], dtype=float),
        node_names=[n.name for n in nodes],
        node_parent=parent,
        node_depth=depth,
        node_weight=np.array([n.weight for n in nodes], dtype=float),
        subtree_end=end,
        req_ids=[r.id for r in reqs],
        req_node=np.array([index[r.team] for r in reqs], dtype=np.int64),
        req_demand=np.array([r.gpus for r in reqs], dtype=float),
        req_weight=np.array([request_weight(r, scenario.policy) for r in reqs], dtype=float),
        req_min=np.array([r.min or 0 for r in reqs], dtype=float),
        cell_req=np.array(cell_req, dtype=np.int64),
        cell_pool=np.array(cell_pool, dtype=np.int64),
        cell_speed=np.array(cell_speed, dtype=float),
        limits=limits,
        guarantees=guarantees,
    )
