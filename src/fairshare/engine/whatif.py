"""What-ifs on top of the engine: compare two allocations; search the levers that would give one
request more (its minimum, weights, priority, guarantees, limits, capacity, sites, GPU types).
Pure: every answer is a re-solve with `allocate` (or the caller's solve)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from typing import Any

from fairshare.engine._allocate import allocate
from fairshare.engine._counterfactual import CAPACITY_REACH, MORE
from fairshare.engine._result import Allocation, RequestResult
from fairshare.errors import FairshareError
from fairshare.scenario import MAX_GPUS, MAX_WEIGHT, OrgNode, Priority, Request, Scenario


@dataclass
class Change:
    kind: str  # "team" | "request"
    name: str
    before: float
    after: float

    @property
    def delta(self) -> float:
        return self.after - self.before


def diff(a: Allocation, b: Allocation) -> list[Change]:
    """GPUs per team and per request, A against B, biggest movers first."""
    changes: list[Change] = []
    teams_a = _team_totals(a)
    teams_b = _team_totals(b)
    for team in dict.fromkeys([*teams_a, *teams_b]):
        changes.append(Change("team", team, teams_a.get(team, 0.0), teams_b.get(team, 0.0)))
    req_a = {r.id: r.total for r in a.requests}
    req_b = {r.id: r.total for r in b.requests}
    for rid in dict.fromkeys([*req_a, *req_b]):
        changes.append(Change("request", rid, req_a.get(rid, 0.0), req_b.get(rid, 0.0)))
    return sorted(changes, key=lambda c: (c.kind != "team", -abs(c.delta), c.name))


def _team_totals(a: Allocation) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in a.requests:
        out[r.team] = out.get(r.team, 0.0) + r.total
    return out


# --- levers: what would give one request more ---------------------------------------------------

WEIGHT_LADDER = (1.05, 1.1, 1.2, 1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64)
TOP_LOSERS = 3


class LeverKind(StrEnum):
    """What a committee can change, one word each (the `kind` of a Lever in JSON)."""

    minimum = "minimum"  # the request's minimum viable size, lowered
    request_weight = "request_weight"
    priority = "priority"
    node_weight = "node_weight"  # its team's or an ancestor's weight
    guarantee = "guarantee"  # a guarantee on its branch, raised
    limit = "limit"  # a limit on its branch, raised
    capacity = "capacity"  # GPUs added to a pool it can use
    site = "site"  # a site it does not allow, allowed
    gpu_type = "gpu_type"  # a GPU type it lists no speed for, at its slowest listed speed


@dataclass(frozen=True)
class Loser:
    """A team that would get less with the change (the request itself left out of its team)."""

    team: str
    gpus: float  # GPUs it would lose (positive)
    effective: float  # reference-GPU equivalents it would lose


@dataclass
class Lever:
    """One lever: the smallest change of it found to give the request more, or `after` None if
    nothing within `searched` does."""

    kind: LeverKind
    target: str  # the request, org node, pool, site or GPU type changed
    label: str  # what is changed, e.g. "weight of team llama"
    before: float | str | None
    after: float | str | None = None  # the smallest change found to give more; None: no effect
    gpu: str | None = None  # a guarantee's or limit's GPU type
    description: str = ""  # the change in words, e.g. "weight of team llama 1 -> 1.1 (x1.1)"
    gain: float = 0.0  # GPUs the request would gain
    effective_gain: float = 0.0  # reference-GPU equivalents it would gain
    funded: bool | None = None  # with a minimum: would it be funded?
    losers: list[Loser] = field(default_factory=list)  # who pays, biggest loss first (at most TOP_LOSERS)
    searched: str = ""  # the range tried
    solves: int = 0  # re-solves this lever took

    @property
    def effect(self) -> bool:
        return self.after is not None


@dataclass
class LeverSearch:
    """Every lever of one request: those that give it more (biggest gain first), then those that
    gain nothing, each once; levers a caller's `stop` cut off are named in `not_searched`."""

    request: str
    levers: list[Lever] = field(default_factory=list)
    no_effect: list[Lever] = field(default_factory=list)
    not_searched: list[str] = field(default_factory=list)
    solves: int = 0
    bound: int = 0  # the most re-solves the search could have taken
    satisfied: bool = False  # it has all it asked for on its fastest type: nothing to search

    @property
    def complete(self) -> bool:
        return not self.not_searched


class _Stopped(FairshareError):
    """The caller's `stop` said so: the lever being searched goes to `not_searched`."""


@dataclass
class _Plan:
    """One lever to search: candidate values, smallest change first."""

    lever: Lever
    candidates: Sequence[Any]
    template: str  # the change in words: {v} the new value, {d} the increase

    def describe(self, value: Any) -> str:
        before = self.lever.before
        step = value - before if isinstance(value, int | float) and isinstance(before, int | float) else 0
        ratio = value / before if isinstance(value, int | float) and isinstance(before, int | float) and before else 1
        return self.template.format(v=value, d=step, f=ratio)

    @property
    def bound(self) -> int:
        """Re-solves `_first` takes at most: the largest candidate, then a bisection."""
        n = len(self.candidates)
        return 0 if n == 0 else 1 + math.ceil(math.log2(n))


def levers(
    scenario: Scenario,
    request_id: str,
    base: Allocation,
    on_solved: Callable[[int, int], None] | None = None,
    *,
    solve: Callable[[Scenario], Allocation] = partial(allocate, check_reasons=False),
    stop: Callable[[], bool] | None = None,
) -> LeverSearch:
    """Search every lever a committee has for the smallest change that gives `request_id` more
    (at least MORE effective GPUs; a request below its minimum: funded), one change at a time
    against `base`, each re-solved with `solve` (a round replays its overrides).

    A lever with values is searched from its largest value (one re-solve says "no effect"), then
    by bisection, so it takes at most 1 + ceil(log2(candidates)) re-solves; `bound` is their sum.
    The gain is assumed to grow with the change; what is reported was re-solved, so it is true
    even where that fails (then maybe not the smallest).  `on_solved(done, total)` before the first
    and after each re-solve; `stop()` is asked before each (the caller's clock: the engine has none).
    """
    req = next((r for r in scenario.requests if r.id == request_id), None)
    if req is None:
        raise KeyError(request_id)
    mine = base.request(request_id)
    out = LeverSearch(request_id)
    if mine.total >= req.gpus and mine.effective >= req.gpus * _best_speed(scenario, req) - MORE:
        out.satisfied = True
        return out
    plans = _plans(scenario, req, mine)
    out.bound = sum(p.bound for p in plans)
    left = out.bound

    def better(a: Allocation) -> bool:
        return a.request(request_id).effective >= mine.effective + MORE

    def outcome(plan: _Plan, value: Any) -> Allocation | None:
        if stop is not None and stop():
            raise _Stopped
        try:
            got = solve(apply_lever(scenario, request_id, replace(plan.lever, after=value)))
        except FairshareError:
            got = None  # infeasible guarantees, an override that no longer fits: not a way to more
        plan.lever.solves += 1
        out.solves += 1
        if on_solved is not None:
            on_solved(out.solves, out.solves + left - plan.lever.solves)
        return got

    if on_solved is not None:
        on_solved(0, out.bound)
    for k, plan in enumerate(plans):
        lever = plan.lever
        try:
            found = _first(plan.candidates, partial(outcome, plan), better)
        except _Stopped:
            out.not_searched += [p.lever.label for p in plans[k:]]
            break
        left -= plan.bound
        if found is None:
            lever.description = lever.label
            out.no_effect.append(lever)
            continue
        value, alloc = found
        got = alloc.request(request_id)
        lever.after = value
        lever.description = plan.describe(value)
        lever.gain = got.total - mine.total
        lever.effective_gain = got.effective - mine.effective
        lever.funded = got.total > 0 if req.min else None
        lever.losers = _losers(base, alloc, request_id)
        out.levers.append(lever)
    out.levers.sort(key=lambda lv: (not lv.funded, -lv.effective_gain))
    if on_solved is not None:
        on_solved(out.solves, out.solves)
    return out


def apply_lever(scenario: Scenario, request_id: str, lever: Lever) -> Scenario:
    """The scenario with `lever` set to its `after` value (what `levers` re-solved)."""
    kind, target, value = lever.kind, lever.target, lever.after
    if kind is LeverKind.minimum:
        return _with_request(scenario, request_id, min=int(value))  # type: ignore[arg-type]
    if kind is LeverKind.request_weight:
        return _with_request(scenario, request_id, weight=float(value))  # type: ignore[arg-type]
    if kind is LeverKind.priority:
        return _with_request(scenario, request_id, priority=Priority(value))
    req = next(r for r in scenario.requests if r.id == request_id)
    if kind is LeverKind.site:
        return _with_request(scenario, request_id, sites=[*(req.sites or []), target])
    if kind is LeverKind.gpu_type:
        return _with_request(scenario, request_id, speed={**(req.speed or {}), target: float(value)})  # type: ignore[arg-type]
    if kind is LeverKind.capacity:
        pools = [p.model_copy(update={"gpus": int(value)}) if p.name == target else p for p in scenario.pools]  # type: ignore[arg-type]
        return scenario.model_copy(update={"pools": pools})
    gpu = lever.gpu or ""

    def change(node: OrgNode) -> OrgNode:
        if kind is LeverKind.node_weight:
            return node.model_copy(update={"weight": float(value)})  # type: ignore[arg-type]
        field_name = "guarantee" if kind is LeverKind.guarantee else "limit"
        return node.model_copy(update={field_name: {**getattr(node, field_name), gpu: int(value)}})  # type: ignore[arg-type]

    return scenario.model_copy(update={"org": _with_node(scenario.org, target, change)})


def _with_node(node: OrgNode, name: str, change: Callable[[OrgNode], OrgNode]) -> OrgNode:
    if node.name == name:
        return change(node)
    kids = [_with_node(c, name, change) for c in node.children]
    if all(a is b for a, b in zip(kids, node.children, strict=True)):
        return node
    return node.model_copy(update={"children": kids})


def _first(
    candidates: Sequence[Any],
    outcome: Callable[[Any], Allocation | None],
    better: Callable[[Allocation], bool],
) -> tuple[Any, Allocation] | None:
    """The first candidate whose allocation is better, assuming the candidates run from no gain,
    through gain, to unsolvable (None: e.g. guarantees above the pools).  The largest first: if it
    solves and gains nothing, no candidate does (one re-solve); else bisect."""
    if not candidates:
        return None
    top = outcome(candidates[-1])
    if top is not None and not better(top):
        return None
    found = (candidates[-1], top) if top is not None else None
    lo, hi = -1, len(candidates) - 1  # lo: gains nothing (-1: as is); hi: gains or does not solve
    while hi - lo > 1:
        mid = (lo + hi) // 2
        got = outcome(candidates[mid])
        if got is not None and not better(got):
            lo = mid
        else:
            hi = mid
            if got is not None:
                found = (candidates[mid], got)
    return found


def _plans(scenario: Scenario, req: Request, mine: RequestResult) -> list[_Plan]:
    """Every lever of `req`, the likeliest fixes first (under a deadline they are searched first)."""
    plans: list[_Plan] = []
    nodes = {n.name: n for n in scenario.nodes()}
    parent = {c.name: n.name for n in scenario.nodes() for c in n.children}
    on_node: dict[str, int] = {}
    for r in scenario.requests:
        on_node[r.team] = on_node.get(r.team, 0) + 1
    branch = [req.team]
    while branch[-1] in parent:
        branch.append(parent[branch[-1]])

    def lever(kind: LeverKind, target: str, label: str, before: Any, gpu: str | None = None) -> Lever:
        return Lever(kind, target, label, before, gpu=gpu)

    if req.min and mine.total == 0:
        plans.append(
            _Plan(
                lever(LeverKind.minimum, req.id, "its minimum", req.min),
                range(req.min - 1, 0, -1),
                f"minimum {req.min:,} -> {{v:,}} (the largest that is funded)",
            )
        )
        plans[-1].lever.searched = f"minimums {req.min - 1:,} down to 1"
    competes = len(nodes[req.team].children) + on_node.get(req.team, 0) > 1  # siblings of the request
    team_plans = [
        _weight_plan(LeverKind.node_weight, n, nodes[n].weight, f"weight of {_node_label(n, req.team)}") for n in branch
    ]
    for i, name in enumerate(branch):
        up = parent.get(name)
        alone = up is None or len(nodes[up].children) + on_node.get(up, 0) <= 1
        if alone:
            team_plans[i].candidates = []
            team_plans[i].lever.searched = (
                "the root: it has no siblings" if up is None else f"no sibling shares {up}'s GPUs with it"
            )
    plans.append(team_plans[0])
    request_weight = _weight_plan(LeverKind.request_weight, req.id, req.weight, "its request weight")
    higher = sorted(
        (p for p in Priority if scenario.policy.priority_weights[p] > scenario.policy.priority_weights[req.priority]),
        key=lambda p: scenario.policy.priority_weights[p],
    )
    priority = _Plan(
        lever(LeverKind.priority, req.id, "its priority", req.priority.value),
        [p.value for p in higher],
        f"priority {req.priority.value} -> {{v}}",
    )
    priority.lever.searched = ", ".join(p.value for p in higher) or "it is already the highest"
    if not competes:
        for p in (request_weight, priority):
            p.candidates = []
            p.lever.searched = f"no other request or node shares {req.team}'s GPUs with it"
    plans += [request_weight, priority, *team_plans[1:]]
    usable = scenario.usable_pools(req)
    types = list(dict.fromkeys(p.gpu for p in usable))
    for pool in usable:
        most = min(pool.gpus + CAPACITY_REACH * req.gpus, MAX_GPUS)
        plan = _Plan(
            lever(LeverKind.capacity, pool.name, f"capacity of pool {pool.name}", pool.gpus),
            range(pool.gpus + 1, most + 1),
            f"pool {pool.name}: {pool.gpus:,} -> {{v:,}} GPUs (+{{d:,}})",
        )
        plan.lever.searched = f"up to +{most - pool.gpus:,} GPUs"
        plans.append(plan)
    for name in branch[:-1] if len(branch) > 1 else branch:
        node = nodes[name]
        for gpu in types:
            have = sum(p.gpus for p in scenario.pools if p.gpu == gpu)
            for kind, now, most in (
                (
                    LeverKind.guarantee,
                    node.guarantee.get(gpu, 0),
                    min(have - _held(scenario.org, name, gpu, branch), node.limit.get(gpu, have)),
                ),
                (LeverKind.limit, node.limit.get(gpu), have),
            ):
                if now is None:
                    continue  # no limit to raise
                word = kind.value
                plan = _Plan(
                    lever(kind, name, f"{word} of {_node_label(name, req.team)} on {gpu}", now, gpu=gpu),
                    range(now + 1, most + 1),
                    f"{word} of {name} on {gpu}: {now:,} -> {{v:,}} GPUs",
                )
                plan.lever.searched = f"up to {most:,} {gpu} GPUs" if now < most else "already at the lab's"
                plans.append(plan)
    if req.sites is not None:
        for site in scenario.sites:
            if site in req.sites or not any(
                req.speed is None or p.gpu in req.speed for p in scenario.pools if p.site == site
            ):
                continue
            plan = _Plan(lever(LeverKind.site, site, f"site {site}", None), [site], "also allow site {v}")
            plan.lever.searched = "allowing it"
            plans.append(plan)
    if req.speed is not None:
        slowest = min(req.speed.values())
        for gpu in scenario.gpu_types:
            if gpu in req.speed or not any(
                p.gpu == gpu and (req.sites is None or p.site in req.sites) for p in scenario.pools
            ):
                continue
            plan = _Plan(
                lever(LeverKind.gpu_type, gpu, f"GPU type {gpu}", None),
                [slowest],
                f"also run on {gpu} (at speed {{v:g}}, its slowest listed)",
            )
            plan.lever.searched = f"at speed {slowest:g}, its slowest listed"
            plans.append(plan)
    return plans


def _held(node: OrgNode, name: str, gpu: str, branch: list[str]) -> int:
    """GPUs of `gpu` that guarantees outside `name`'s line hold (the topmost ones): `name`'s own
    guarantee cannot take them, so its search stops below (one re-solve, not a bisection, when
    nothing within reach helps)."""
    if node.name == name:
        return 0
    if node.name not in branch and gpu in node.guarantee:
        return node.guarantee[gpu]
    return sum(_held(c, name, gpu, branch) for c in node.children)


def _weight_plan(kind: LeverKind, target: str, weight: float, label: str) -> _Plan:
    values = [weight * f for f in WEIGHT_LADDER if weight * f <= MAX_WEIGHT]
    plan = _Plan(
        Lever(kind, target, label, weight),
        values,
        f"{label} {weight:g} -> {{v:g}} (x{{f:g}})",
    )
    plan.lever.searched = f"up to x{values[-1] / weight:g}" if values else "already at the largest weight"
    return plan


def _node_label(name: str, team: str) -> str:
    return f"team {name}" if name == team else f"node {name}"


def _best_speed(scenario: Scenario, req: Request) -> float:
    return max((1.0 if req.speed is None else req.speed[p.gpu] for p in scenario.usable_pools(req)), default=0.0)


def _losers(base: Allocation, after: Allocation, request_id: str) -> list[Loser]:
    """Teams whose throughput drops with the change (the request itself left out), biggest loss first."""

    def totals(a: Allocation) -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        for r in a.requests:
            if r.id != request_id:
                g, e = out.get(r.team, (0.0, 0.0))
                out[r.team] = (g + r.total, e + r.effective)
        return out

    before, now = totals(base), totals(after)
    lost = [
        Loser(team, g - now.get(team, (0.0, 0.0))[0], e - now.get(team, (0.0, 0.0))[1])
        for team, (g, e) in before.items()
    ]
    lost = [
        x for x in lost if x.effective >= MORE
    ]  # fairness counts throughput: GPUs swapped for as good ones cost nothing
    return sorted(lost, key=lambda x: (-x.effective, -x.gpus, x.team))[:TOP_LOSERS]


def _with_request(scenario: Scenario, request_id: str, **update: object) -> Scenario:
    return scenario.model_copy(
        update={"requests": [r.model_copy(update=update) if r.id == request_id else r for r in scenario.requests]}
    )
