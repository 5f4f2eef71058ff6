"""Compile a Scenario into flat arrays the solver works on.

Nodes are numbered in pre-order, so the subtree of node n is the index range
[n, subtree_end[n]); requests point at their team's node number.  A *cell* is one
(request, pool) pair the request may use; only cells become LP variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from fairshare.engine._normalize import equal_share_speeds
from fairshare.scenario import Normalize, Scenario, Sharing, history_boost, request_weight


def _grouped(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices sorted by key (stable) and where each key 0..n_keys starts among them, so the
    indices with key k are order[start[k]:start[k + 1]]."""
    order = np.argsort(keys, kind="stable")
    return order, np.searchsorted(keys[order], np.arange(n_keys + 1))


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
    placement_slack: float = 0.0  # policy.placement_slack: the part of its value a node may spend on placement
    surplus: bool = False  # policy.sharing surplus: guarantees first, weights share what is above them

    @property
    def n_nodes(self) -> int:
        return len(self.node_names)

    @property
    def n_requests(self) -> int:
        return len(self.req_ids)

    @property
    def n_cells(self) -> int:
        return len(self.cell_req)

    def subtree_type_cells(self, node: int, gpu_type: int) -> np.ndarray:
        """Boolean mask over cells: requests in node's subtree on pools of one GPU type (the
        cells a limit or a guarantee of that node and type counts)."""
        cell_node = self.req_node[self.cell_req]
        return (cell_node >= node) & (cell_node < self.subtree_end[node]) & (self.pool_type[self.cell_pool] == gpu_type)

    @cached_property
    def cells_of_request(self) -> list[np.ndarray]:
        """Cell indices of each request."""
        order, bounds = _grouped(self.cell_req, self.n_requests)
        return [order[bounds[r] : bounds[r + 1]] for r in range(self.n_requests)]

    @cached_property
    def speed_matrix(self) -> np.ndarray:
        """speed_matrix[r, p]: request r's speed on pool p, 0 where it has no cell."""
        out = np.zeros((self.n_requests, len(self.pool_cap)))
        out[self.cell_req, self.cell_pool] = self.cell_speed
        return out

    @cached_property
    def _requests_by_node(self) -> tuple[np.ndarray, np.ndarray]:
        return _grouped(self.req_node, self.n_nodes)

    @cached_property
    def _cells_by_node(self) -> tuple[np.ndarray, np.ndarray]:
        return _grouped(self.req_node[self.cell_req], self.n_nodes)

    def _in_subtree(self, by_node: tuple[np.ndarray, np.ndarray], node: int) -> np.ndarray:
        """The indices grouped by node (nodes are in pre-order, so a subtree is a range of
        them) that fall in node's subtree, ascending: a slice of a sort, not a mask over all."""
        order, start = by_node
        return np.sort(order[start[node] : start[self.subtree_end[node]]])

    def subtree_requests(self, node: int) -> np.ndarray:
        """Indices of the requests in node's subtree, ascending."""
        return self._in_subtree(self._requests_by_node, node)

    def subtree_cells(self, node: int) -> np.ndarray:
        """Indices of the cells of the requests in node's subtree, ascending."""
        return self._in_subtree(self._cells_by_node, node)

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
    # a cell for every (request, pool) the request may run on (Request.may_run_on, the one rule,
    # asked once per distinct request profile and (GPU type, site) of the pools: labs have few
    # of each) on a pool with GPUs; rows of `speed` are requests, columns types (nan: not listed)
    n_types = len(types)
    speed = np.full((len(reqs), n_types), np.nan)
    place_index = {place: k for k, place in enumerate(dict.fromkeys((p.gpu, p.site) for p in pools))}
    place_of_pool = np.array([place_index[p.gpu, p.site] for p in pools], dtype=np.int64)
    profiles: dict[tuple[tuple[str, ...] | None, tuple[str, ...] | None], int] = {}
    may_run: list[list[bool]] = []  # profile x place
    req_profile = np.zeros(len(reqs), dtype=np.int64)
    for r, req in enumerate(reqs):
        if req.speed is None:
            speed[r] = 1.0
        else:
            row = speed[r]
            for g, v in req.speed.items():
                t = type_index.get(g)
                if t is not None:
                    row[t] = v
        key = (None if req.speed is None else tuple(req.speed), None if req.sites is None else tuple(req.sites))
        k = profiles.get(key)
        if k is None:
            k = profiles[key] = len(may_run)
            may_run.append([req.may_run_on(gpu, site) for gpu, site in place_index])
        req_profile[r] = k
    pool_type = np.array([type_index[p.gpu] for p in pools], dtype=np.int64)
    pool_ok = np.array([p.gpus != 0 for p in pools], dtype=bool)
    pool_speed = speed[:, pool_type]  # request x pool
    runs_on = np.array(may_run, dtype=bool).reshape(len(may_run), len(place_index))[:, place_of_pool]
    usable = runs_on[req_profile] & pool_ok
    cell_req, cell_pool = np.nonzero(usable)  # by request, then by pool
    cell_req = cell_req.astype(np.int64)
    cell_pool = cell_pool.astype(np.int64)
    cell_speed = pool_speed[cell_req, cell_pool]
    if scenario.policy.normalize == Normalize.equal_share:
        cell_speed = equal_share_speeds(cell_req, cell_pool, cell_speed, np.array([p.gpus for p in pools], float))

    limits = [(index[n.name], type_index[g], float(v)) for n in nodes for g, v in n.limit.items()]
    guarantees = [(index[n.name], type_index[g], float(v)) for n in nodes for g, v in n.guarantee.items() if v > 0]
    return Problem(
        types=types,
        pool_names=[p.name for p in pools],
        pool_type=pool_type,
        pool_site=[p.site for p in pools],
        pool_cap=np.array([p.gpus for p in pools], dtype=float),
        node_names=[n.name for n in nodes],
        node_parent=parent,
        node_depth=depth,
        node_weight=np.array([n.weight * history_boost(n, scenario.policy) for n in nodes], dtype=float),
        subtree_end=end,
        req_ids=[r.id for r in reqs],
        req_node=np.array([index[r.team] for r in reqs], dtype=np.int64),
        req_demand=np.array([r.gpus for r in reqs], dtype=float),
        req_weight=np.array([request_weight(r, scenario.policy) for r in reqs], dtype=float),
        req_min=np.array([r.min or 0 for r in reqs], dtype=float),
        cell_req=cell_req,
        cell_pool=cell_pool,
        cell_speed=cell_speed,
        limits=limits,
        guarantees=guarantees,
        placement_slack=float(scenario.policy.placement_slack),
        surplus=scenario.policy.sharing == Sharing.surplus,
    )
