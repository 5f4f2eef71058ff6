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
- otherwise solves the root's group (and the groups of teams with a kind of job that cannot run
  on every type), and stops there when the teams' groups cannot change the teams' totals
  (`_from_root`), else solves every group, on the calling thread (no thread pool for a
  16-group tree), and reads the teams' totals, without explaining, rounding or publishing an
  Allocation;
- memoises: the same demand gives the same shares.
`request_shares` does the same for a flat problem (every request under one root, equal weights).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np

from fairshare.engine._allocate import solve_problem
from fairshare.engine._groupcache import GroupCache
from fairshare.engine._hierarchy import root_allotments
from fairshare.engine._placement import starved_requests
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
        self.root_only = 0  # of the solves, those answered by the root's group alone (_from_root)
        self.memo_hits = 0
        self._memo: dict[tuple, Shares] = {}
        self.groups = GroupCache()  # the teams' groups: many repeat, or fit at once
        self._memo_size = memo
        self._caps = tuple(self.capacity.items())
        self._cap = np.array([self.capacity[t] for t in self.types], dtype=float)

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

    def _fit(self, key: tuple) -> Shares | None:
        """The shares when every kind of job fits on its (unique) fastest type at once, else None."""
        where = _fastest_fit(self._caps, self._cap, [(gpus, speed) for (_, speed), gpus in key])
        if where is None:
            return None
        out = self._zeros()
        for ((team, _), gpus), t in zip(key, where, strict=True):
            out[team][self.types[t]] += float(gpus)
        return out

    def _solve(self, key: tuple) -> Shares:
        pr = self._problem(key)
        got = self._from_root(pr, key)
        if got is not None:
            self.root_only += 1
            return got
        sol = solve_problem(pr, threads=1, cache=self.groups)
        return self._as_shares(_team_gpus(pr, sol.fill.x, len(self.teams)))

    def _as_shares(self, gpus: np.ndarray) -> Shares:
        """Team x type GPUs as the published shares (rounded to 9 decimals)."""
        types = list(enumerate(self.types))
        return {team: {t: round(float(gpus[n, p]), 9) for p, t in types} for n, team in enumerate(self.teams)}

    def _from_root(self, pr: Problem, key: tuple) -> Shares | None:
        """The shares from the root's group, when the teams' groups cannot change them; else None.

        A team whose every kind of job runs on every type uses its whole allotment in its own
        max-min (GPUs left idle on a type would mean every kind at its demand, more than the
        team asked for) and starves none of its requests (any GPU a better-off one holds could
        lift it).  The groups of the other teams are solved and checked for the same two things.
        If they hold, and no team that wants more is left beside idle GPUs, neither the leftover
        passes nor the re-placement moves anything: the teams' totals per type are the root's
        allotments (to the LP's margins)."""
        everywhere = set(self.types)
        asked = dict.fromkeys(self.teams, 0.0)
        narrow = set()  # team nodes with a kind that cannot run on some type
        node = {team: n + 1 for n, team in enumerate(self.teams)}
        for (team, speed), gpus in key:
            asked[team] += gpus
            if not everywhere.issubset(t for t, _ in speed):
                narrow.add(node[team])
        allot, x = root_allotments(pr, pr.req_demand, narrow, self.groups)
        got = np.array([allot[n + 1] for n in range(len(self.teams))])
        if narrow:
            used = _team_gpus(pr, x, len(self.teams))
            mine = [n - 1 for n in narrow]
            if np.any(got[mine] - used[mine] > 1e-6) or len(starved_requests(pr, x, pr.req_demand)):
                return None
        hungry = any(got[n].sum() < asked[team] - 1e-6 for n, team in enumerate(self.teams))
        if hungry and np.any(self._cap - got.sum(axis=0) > 1e-6):
            return None
        return self._as_shares(got)

    def _problem(self, key: tuple) -> Problem:
        """The compiled problem `compile_scenario(self.scenario(...))` would give, built directly."""
        team_node = {team: i + 1 for i, team in enumerate(self.teams)}
        return _pools_problem(
            self.capacity,
            "root",
            [(self.node[t], self.weights[t]) for t in self.teams],
            [team_node[team] for (team, _), _ in key],
            [(gpus, speed) for (_, speed), gpus in key],
            "r",
        )


def _team_gpus(pr: Problem, x: np.ndarray, teams: int) -> np.ndarray:
    """GPUs per team (the root's children, nodes 1..teams) and type of the requests' cells `x`."""
    totals = np.zeros((pr.n_nodes, len(pr.pool_cap)))
    np.add.at(totals, (pr.req_node[pr.cell_req], pr.cell_pool), x)
    return totals[1 : teams + 1]


def request_shares(
    capacity: Mapping[str, int], requests: Sequence[tuple[int, Speed]], group: bool = True
) -> list[dict[str, float]]:
    """Each request's exact GPUs per type when the requests share the cluster flat, with equal
    weights (Gavel's max-min across jobs), found the fast way (see the module).

    Identical requests (the same gang size and speeds) are one request of their total size with
    their number as its weight, split equally: equal treatment of equals.  That is
    `allocate(flat_scenario(capacity, requests), fractional=True)`, each class's GPUs divided by
    its size, and every request's effective GPUs are those of the flat max-min over the requests
    one by one (unique: identical requests get the same in it; only the GPU types of a
    degenerate optimum may differ).  tests/simulate/test_engine_fast_path.py checks both.
    `group=False`: one request per job (the LP's own vertex; what the gavel policy did before)."""
    types = list(capacity)
    caps = tuple(capacity.items())
    fastest = _fastest_fit(caps, np.array([n for _, n in caps], dtype=float), requests)
    if fastest is not None:
        return [{types[f]: float(g)} for (g, _), f in zip(requests, fastest, strict=True)]
    classes, of = identical_requests(requests, group)
    pr = _pools_problem(
        capacity,
        FLAT_ROOT,
        [],
        [0] * len(classes),
        [(g * k, speed) for g, speed, k in classes],
        "j",
        [k for *_, k in classes],
    )
    x = solve_problem(pr, threads=1).fill.x
    per_class: list[dict[str, float]] = [{} for _ in classes]
    for c, p, v in zip(pr.cell_req.tolist(), pr.cell_pool.tolist(), x.tolist(), strict=True):
        if v > 1e-9:
            per_class[c][types[p]] = round(v / classes[c][2], 9)
    return [dict(per_class[c]) for c in of]


def identical_requests(
    requests: Sequence[tuple[int, Speed]], group: bool = True
) -> tuple[list[tuple[int, Speed, int]], list[int]]:
    """The distinct requests (gang size, speeds, how many), in order of first appearance, and
    each request's index among them (group=False: every request alone)."""
    if not group:
        return [(g, speed, 1) for g, speed in requests], list(range(len(requests)))
    count = Counter(requests)  # in order of first appearance
    index = {r: i for i, r in enumerate(count)}
    return [(g, speed, k) for (g, speed), k in count.items()], [index[r] for r in requests]


def flat_scenario(capacity: Mapping[str, int], requests: Sequence[tuple[int, Speed]], group: bool = True) -> Scenario:
    """`request_shares`' problem as a Scenario, for `allocate` (explanations, and the tests): one
    request per class of identical requests, of their total size, weighted by their number."""
    classes, _ = identical_requests(requests, group)
    return Scenario(
        name="flat-shares",
        pools=[Pool(name=t, gpu=t, gpus=n) for t, n in capacity.items()],
        org=OrgNode(name=FLAT_ROOT),
        requests=[
            Request(id=f"j{i}", team=FLAT_ROOT, gpus=g * k, speed=dict(speed), weight=float(k))
            for i, (g, speed, k) in enumerate(classes)
        ],
    )


def _fastest_fit(
    caps: tuple[tuple[str, int], ...], cap: np.ndarray, jobs: Sequence[tuple[int, Speed]]
) -> list[int] | None:
    """Each job's (unique) fastest type, if every job fits on it at once, else None.  Then the
    water-fill holds every job at its cap in its first step, and that placement is the only one
    that reaches every cap: the engine's answer, without an LP."""
    fastest = [_fastest_cached(speed, caps) for _, speed in jobs]
    if any(f is None for f in fastest):
        return None
    where = np.array(fastest, dtype=np.int64)
    load = np.bincount(where, weights=np.array([g for g, _ in jobs], dtype=float), minlength=len(cap))
    return [int(f) for f in where] if np.all(load <= cap + FITS_TOL) else None


def _pools_problem(
    capacity: Mapping[str, int],
    root: str,
    teams: Sequence[tuple[str, float]],
    req_node: Sequence[int],
    jobs: Sequence[tuple[int, Speed]],
    id_prefix: str,
    weights: Sequence[float] | None = None,
) -> Problem:
    """A compiled problem with a pool per GPU type, `teams` (node name, weight) under `root`
    (none: every request on the root) and one request per job on node `req_node` (0: the root),
    weighted by `weights` (none: 1 each),
    default policy: what `compile_scenario` gives for such a scenario, without building one."""
    types = list(capacity)
    index = {t: i for i, t in enumerate(types)}
    n_teams, n_types, n = len(teams), len(types), len(jobs)
    cell_req, cell_pool, cell_speed = [], [], []
    for r, (_, speed) in enumerate(jobs):
        for p, v in sorted((index[t], v) for t, v in speed if t in index and capacity[t] > 0):
            cell_req.append(r)
            cell_pool.append(p)
            cell_speed.append(v)
    policy = Policy()
    return Problem(
        types=types,
        pool_names=types,
        pool_type=np.arange(n_types, dtype=np.int64),
        pool_site=[Pool.model_fields["site"].default] * n_types,
        pool_cap=np.array([capacity[t] for t in types], dtype=float),
        node_names=[root, *(name for name, _ in teams)],
        node_parent=np.r_[-1, np.zeros(n_teams, dtype=np.int64)].astype(np.int64),
        node_depth=np.r_[0, np.ones(n_teams, dtype=np.int64)].astype(np.int64),
        node_weight=np.array([1.0, *(w for _, w in teams)], dtype=float),
        subtree_end=np.r_[n_teams + 1, np.arange(2, n_teams + 2)].astype(np.int64),
        req_ids=[f"{id_prefix}{i}" for i in range(n)],
        req_node=np.array(req_node, dtype=np.int64).reshape(n),
        req_demand=np.array([g for g, _ in jobs], dtype=float).reshape(n),
        req_weight=np.full(n, float(policy.priority_weights[Request.model_fields["priority"].default]))
        * (np.asarray(weights, dtype=float) if weights is not None else 1.0),
        req_min=np.zeros(n),
        cell_req=np.array(cell_req, dtype=np.int64),
        cell_pool=np.array(cell_pool, dtype=np.int64),
        cell_speed=np.array(cell_speed, dtype=float),
        placement_slack=float(policy.placement_slack),
    )


@lru_cache(maxsize=1 << 16)
def _fastest_cached(speed: Speed, capacity: tuple[tuple[str, int], ...]) -> int | None:
    """The one fastest type a profile can use (on a type with GPUs), None if tied or none; cached,
    as both policies ask for every kind of job (or job) at every arrival or finish."""
    usable = [(v, i) for i, (t, n) in enumerate(capacity) for u, v in speed if u == t and v > 0 and n > 0]
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
