"""Shares for small problems solved many times (the simulator's rounds): typed entry points
beside `allocate`, `TeamShares` (the fairshare policy) and `request_shares` (the gavel policy).

`TeamShares(capacity, weights)` is one cluster (a pool per GPU type) and one flat set of teams
(children of a root, with weights).  Called with a demand (per team, kinds of job: a speed
profile and the GPUs its jobs ask for) it gives every team its exact share of every type:
the `gpus` of the team's node in `allocate(self.scenario(demand), fractional=True)`, the same
numbers (tests/simulate/test_engine_fast_path.py compares them on every call of a replay).  It is faster
because it
- builds the engine's compiled problem directly from the caller's typed values: no pydantic
  Scenario, no validation (the caller built them), the cluster and the teams compiled once;
- answers at once when every kind of job fits on its fastest type (the water-fill would hold
  every team at its cap there: each kind on its fastest type, nothing to share);
- otherwise solves the groups on the calling thread (no thread pool for a 16-group tree) and
  reads the teams' totals, without explaining, rounding or publishing an Allocation;
- memoises: the same demand gives the same shares.
`request_shares` does the same for a flat problem (every request under one root, equal weights).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np

from fairshare.engine._allocate import solve_problem
from fairshare.engine._groupcache import GroupCache
from fairshare.engine._problem import Problem
from fairshare.scenario import OrgNode, Policy, Pool, Request, Scenario

Speed = tuple[tuple[str, float], ...]  # (GPU type, speed relative to the first type), types with speed > 0
Demand = Sequence[tuple[tuple[str, Speed], int]]  # ((team, speed profile), GPUs asked), one per kind of job
Shares = dict[str, dict[str, float]]  # team -> GPU type -> GPUs (exact)
MEMO = 4096  # answers kept (demand -> shares)
FITS_TOL = 1e-9
FLAT_ROOT = "jobs"


class TeamShares:
    """The engine's shares for one cluster and team set, for many demands (see the module)."""

    def __init__(self, capacity: Mapping[str, int], weights: Mapping[str, float], memo: int = MEMO) -> None:
        self.types = list(capacity)
        self.capacity = {t: int(n) for t, n in capacity.items()}
        self.teams = sorted(weights)
        self.weights = {t: float(weights[t]) for t in self.teams}
        self.node = _node_names(self.teams)
        self.solves = 0  # engine solves (neither memoised nor fitting at once)
        self.fitted = 0  # answered at once: every kind on its fastest type
        self.memo_hits = 0
        self._memo: dict[tuple, Shares] = {}
        self.groups = GroupCache()  # the teams' groups: many repeat, or fit at once
        self._memo_size = memo
        self._type_index = {t: i for i, t in enumerate(self.types)}
        self._cap = np.array([self.capacity[t] for t in self.types], dtype=float)
        self._policy = Policy()
        self._fastest: dict[Speed, int | None] = {}  # profile -> its unique fastest usable type, None if tied

    def __call__(self, demand: Demand) -> Shares:
        """Every team's exact GPUs per type for `demand` (a team with none: zeros)."""
        key = tuple(sorted(demand))
        got = self._memo.get(key)
        if got is not None:
            self.memo_hits += 1
            return got
        got = self._fit(key)
        if got is None:
            got = self._solve(key)
            self.solves += 1
        else:
            self.fitted += 1
        if len(self._memo) >= self._memo_size:
            self._memo.pop(next(iter(self._memo)))
        self._memo[key] = got
        return got

    def scenario(self, demand: Demand, name: str = "team-shares") -> Scenario:
        """The same problem as a Scenario, for `allocate` (explanations, and the tests)."""
        key = tuple(sorted(demand))
        org = OrgNode(name="root", children=[OrgNode(name=self.node[t], weight=self.weights[t]) for t in self.teams])
        pools = [Pool(name=t, gpu=t, gpus=n) for t, n in self.capacity.items()]
        requests = [
            Request(id=f"r{i}", team=self.node[team], gpus=gpus, speed=dict(speed))
            for i, ((team, speed), gpus) in enumerate(key)
        ]
        return Scenario(name=name, pools=pools, org=org, reference_gpu=self.types[0], requests=requests)

    def _zeros(self) -> Shares:
        return {team: dict.fromkeys(self.types, 0.0) for team in self.teams}

    def _fastest_type(self, speed: Speed) -> int | None:
        got = self._fastest.get(speed, -1)
        if got == -1:
            got = self._fastest[speed] = _fastest(speed, self._type_index, self.capacity)
        return got

    def _fit(self, key: tuple) -> Shares | None:
        """The shares when every kind of job fits on its (unique) fastest type at once, else None.
        Then every team reaches its cap (its demand on its fastest types) in the water-fill's
        first step, and that placement is the only one that reaches every cap."""
        load = np.zeros(len(self.types))
        where = []
        for (_, speed), gpus in key:
            t = self._fastest_type(speed)
            if t is None:
                return None
            load[t] += gpus
            where.append(t)
        if np.any(load > self._cap + FITS_TOL):
            return None
        out = self._zeros()
        for ((team, _), gpus), t in zip(key, where, strict=True):
            out[team][self.types[t]] += float(gpus)
        return out

    def _solve(self, key: tuple) -> Shares:
        pr = self._problem(key)
        sol = solve_problem(pr, threads=1, cache=self.groups)
        totals = np.zeros((pr.n_nodes, len(self.types)))
        np.add.at(totals, (pr.req_node[pr.cell_req], pr.cell_pool), sol.fill.x)
        return {
            team: {t: round(float(totals[n + 1, p]), 9) for p, t in enumerate(self.types)}
            for n, team in enumerate(self.teams)
        }

    def _problem(self, key: tuple) -> Problem:
        """The compiled problem `compile_scenario(self.scenario(...))` would give, built directly."""
        n_teams, n_types = len(self.teams), len(self.types)
        team_node = {team: i + 1 for i, team in enumerate(self.teams)}
        cell_req, cell_pool, cell_speed = [], [], []
        for r, ((_, speed), _) in enumerate(key):
            for t, v in speed:
                p = self._type_index.get(t)
                if p is not None and self.capacity[t] > 0:
                    cell_req.append(r)
                    cell_pool.append(p)
                    cell_speed.append(v)
        order = np.lexsort((np.array(cell_pool, dtype=np.int64), np.array(cell_req, dtype=np.int64)))
        normal = self._policy.priority_weights[Request.model_fields["priority"].default]
        return Problem(
            types=self.types,
            pool_names=self.types,
            pool_type=np.arange(n_types, dtype=np.int64),
            pool_site=[Pool.model_fields["site"].default] * n_types,
            pool_cap=self._cap.copy(),
            node_names=["root", *(self.node[t] for t in self.teams)],
            node_parent=np.r_[-1, np.zeros(n_teams, dtype=np.int64)].astype(np.int64),
            node_depth=np.r_[0, np.ones(n_teams, dtype=np.int64)].astype(np.int64),
            node_weight=np.array([1.0, *(self.weights[t] for t in self.teams)], dtype=float),
            subtree_end=np.r_[n_teams + 1, np.arange(2, n_teams + 2)].astype(np.int64),
            req_ids=[f"r{i}" for i in range(len(key))],
            req_node=np.array([team_node[team] for (team, _), _ in key], dtype=np.int64),
            req_demand=np.array([gpus for _, gpus in key], dtype=float),
            req_weight=np.full(len(key), float(normal)),
            req_min=np.zeros(len(key)),
            cell_req=np.array(cell_req, dtype=np.int64)[order],
            cell_pool=np.array(cell_pool, dtype=np.int64)[order],
            cell_speed=np.array(cell_speed, dtype=float)[order],
            placement_slack=float(self._policy.placement_slack),
        )


def request_shares(capacity: Mapping[str, int], requests: Sequence[tuple[int, Speed]]) -> list[dict[str, float]]:
    """Each request's exact GPUs per type when the requests share the cluster flat, with equal
    weights (Gavel's max-min across jobs): `allocate(flat_scenario(capacity, requests),
    fractional=True).requests[i].gpus`, the same numbers, found the fast way (see the module)."""
    types = list(capacity)
    index = {t: i for i, t in enumerate(types)}
    cap = np.array([capacity[t] for t in types], dtype=float)
    caps = tuple(capacity.items())
    fastest = [_fastest_cached(speed, caps) for _, speed in requests]
    if all(f is not None for f in fastest):
        load = np.bincount(
            np.array(fastest, dtype=np.int64), weights=[g for g, _ in requests], minlength=len(types)
        ).astype(float)
        if np.all(load <= cap + FITS_TOL):
            return [{types[f]: float(g)} for (g, _), f in zip(requests, fastest, strict=True) if f is not None]
    cell_req, cell_pool, cell_speed = [], [], []
    for r, (_, speed) in enumerate(requests):
        for p, t in sorted((index[t], t) for t, v in speed if t in index and capacity[t] > 0):
            cell_req.append(r)
            cell_pool.append(p)
            cell_speed.append(dict(speed)[t])
    n, policy = len(requests), Policy()
    pr = Problem(
        types=types,
        pool_names=types,
        pool_type=np.arange(len(types), dtype=np.int64),
        pool_site=[Pool.model_fields["site"].default] * len(types),
        pool_cap=cap,
        node_names=[FLAT_ROOT],
        node_parent=np.array([-1], dtype=np.int64),
        node_depth=np.zeros(1, dtype=np.int64),
        node_weight=np.ones(1),
        subtree_end=np.ones(1, dtype=np.int64),
        req_ids=[f"j{i}" for i in range(n)],
        req_node=np.zeros(n, dtype=np.int64),
        req_demand=np.array([g for g, _ in requests], dtype=float),
        req_weight=np.full(n, float(policy.priority_weights[Request.model_fields["priority"].default])),
        req_min=np.zeros(n),
        cell_req=np.array(cell_req, dtype=np.int64),
        cell_pool=np.array(cell_pool, dtype=np.int64),
        cell_speed=np.array(cell_speed, dtype=float),
        placement_slack=float(policy.placement_slack),
    )
    x = solve_problem(pr, threads=1).fill.x
    out: list[dict[str, float]] = [{} for _ in range(n)]
    for r, p, v in zip(pr.cell_req.tolist(), pr.cell_pool.tolist(), x.tolist(), strict=True):
        if v > 1e-9:
            out[r][types[p]] = round(v, 9)
    return out


def flat_scenario(capacity: Mapping[str, int], requests: Sequence[tuple[int, Speed]]) -> Scenario:
    """`request_shares`' problem as a Scenario, for `allocate` (explanations, and the tests)."""
    return Scenario(
        name="flat-shares",
        pools=[Pool(name=t, gpu=t, gpus=n) for t, n in capacity.items()],
        org=OrgNode(name=FLAT_ROOT),
        requests=[
            Request(id=f"j{i}", team=FLAT_ROOT, gpus=g, speed=dict(speed)) for i, (g, speed) in enumerate(requests)
        ],
    )


@lru_cache(maxsize=1 << 16)
def _fastest_cached(speed: Speed, capacity: tuple[tuple[str, int], ...]) -> int | None:
    """`_fastest` for a profile seen before on the same cluster (the gavel policy asks for every
    active job at every arrival or finish)."""
    return _fastest(speed, {t: i for i, (t, _) in enumerate(capacity)}, dict(capacity))


def _fastest(speed: Speed, index: Mapping[str, int], capacity: Mapping[str, int]) -> int | None:
    """The one fastest type a profile can use (on a type with GPUs), None if tied or none."""
    usable = [(v, index[t]) for t, v in speed if v > 0 and capacity.get(t, 0) > 0]
    best = max((v for v, _ in usable), default=0.0)
    top = [i for v, i in usable if v == best]
    return top[0] if len(top) == 1 else None


def _node_names(teams: Sequence[str]) -> dict[str, str]:
    """Team names as unique org node names (the scenario allows [A-Za-z0-9_.-])."""
    out: dict[str, str] = {}
    for i, team in enumerate(sorted(teams)):
        safe = "".join(c if (c.isascii() and c.isalnum()) or c in "_.-" else "_" for c in team)
        name = f"team.{safe}"
        if name in out.values():
            name = f"{name}.{i}"
        out[team] = name
    return out
