"""Committee overrides: pin a request at a number of GPUs and re-solve everyone else around it.

A pin takes its GPUs out of the pools before the engine runs, counts them against the
guarantees and limits of the request's ancestors, and removes the request from the solve;
the engine then shares what is left as usual.  Pure: no I/O.
"""

from __future__ import annotations

from fairshare.errors import UserError

from dataclasses import dataclass, replace

from fairshare.engine import Allocation, allocate
from fairshare.engine._result import Fairness, NodeResult, PoolResult, Reason, RequestResult
from fairshare.scenario import OrgNode, Pool, Request, Scenario, request_weight


class OverrideError(UserError, ValueError):
    """A pin that cannot be honoured (unknown pool, unusable type, over capacity)."""


@dataclass(frozen=True)
class Pin:
    request: str
    gpus: dict[str, int]  # pool -> GPUs
    reason: str


def usable_pools(scenario: Scenario, req: Request) -> list[Pool]:
    return [p for p in scenario.pools
            if (req.speed is None or p.gpu in req.speed) and (req.sites is None or p.site in req.sites)]


def speed_on(req: Request, gpu: str) -> float:
    return 1.0 if req.speed is None else req.speed.get(gpu, 0.0)


def place(scenario: Scenario, request_id: str, total: int, current: dict[str, int],
          taken: dict[str, int] | None = None) -> dict[str, int]:
    """Spread `total` GPUs over the request's pools: keep what it has, trim the slowest pools
    first, grow on the fastest pools first, never past a pool's capacity minus `taken`."""
    req = _request(scenario, request_id)
    pools = usable_pools(scenario, req)
    if not pools and total > 0:
        raise OverrideError(f"request {request_id!r} can use no pool, so no GPUs can be pinned to it")
    if total < 0:
        raise OverrideError(f"cannot pin {total} GPUs to request {request_id!r}; a pin is 0 GPUs or more")
    taken = taken or {}
    by_speed = sorted(pools, key=lambda p: (-speed_on(req, p.gpu), scenario.pools.index(p)))
    free = {p.name: max(p.gpus - taken.get(p.name, 0), 0) for p in pools}
    # keep what it has, but never more than a pool has left once other pins are taken out
    out = {p.name: min(max(int(current.get(p.name, 0)), 0), free[p.name]) for p in pools}
    excess = sum(out.values()) - total
    for p in reversed(by_speed):
        cut = min(max(excess, 0), out[p.name])
        out[p.name] -= cut
        excess -= cut
    for p in by_speed:
        room = free[p.name] - out[p.name]
        add = min(max(-excess, 0), max(room, 0))
        out[p.name] += add
        excess += add
    if excess < 0:
        raise OverrideError(f"request {request_id!r} can use at most {total + excess} GPUs of its pools "
                            f"({', '.join(p.name for p in pools)}); {total} cannot be pinned")
    return {k: v for k, v in out.items() if v > 0}


def allocate_with_pins(scenario: Scenario, pins: list[Pin]) -> Allocation:
    """The engine's allocation with every pinned request held at its pinned GPUs."""
    if not pins:
        return allocate(scenario)
    pinned: dict[str, Pin] = {}
    for pin in pins:
        if pin.request in pinned:
            raise OverrideError(f"request {pin.request!r} is pinned twice; keep one override per request")
        pinned[pin.request] = pin
    pool_of = {p.name: p for p in scenario.pools}
    used: dict[str, int] = {}
    for pin in pins:
        req = _request(scenario, pin.request)
        allowed = {p.name for p in usable_pools(scenario, req)}
        for pool, n in pin.gpus.items():
            if pool not in pool_of:
                raise OverrideError(f"override of {pin.request!r}: unknown pool {pool!r}")
            if pool not in allowed:
                raise OverrideError(f"override of {pin.request!r}: it cannot run in pool {pool!r} (GPU type or site)")
            if n < 0:
                raise OverrideError(f"override of {pin.request!r}: {n} GPUs in pool {pool!r}; a pin is 0 GPUs or more")
            used[pool] = used.get(pool, 0) + n
    for pool, n in used.items():
        if n > pool_of[pool].gpus:
            raise OverrideError(f"overrides pin {n} GPUs in pool {pool!r}, which has {pool_of[pool].gpus}")
    reduced = scenario.model_copy(update={
        "pools": [p.model_copy(update={"gpus": p.gpus - used.get(p.name, 0)}) for p in scenario.pools],
        "org": _reduce_tree(scenario, pins),
        "requests": [r for r in scenario.requests if r.id not in pinned],
    })
    return _merge(scenario, allocate(reduced), pinned)


def _request(scenario: Scenario, request_id: str) -> Request:
    for r in scenario.requests:
        if r.id == request_id:
            return r
    raise OverrideError(f"unknown request {request_id!r}")


def _pinned_types(scenario: Scenario, pin: Pin) -> dict[str, int]:
    gpu_of = {p.name: p.gpu for p in scenario.pools}
    out: dict[str, int] = {}
    for pool, n in pin.gpus.items():
        out[gpu_of[pool]] = out.get(gpu_of[pool], 0) + n
    return out


def _ancestry(scenario: Scenario) -> dict[str, list[str]]:
    """Node name -> the node and all its ancestors."""
    out: dict[str, list[str]] = {}

    def walk(node: OrgNode, path: list[str]) -> None:
        out[node.name] = [node.name, *path]
        for c in node.children:
            walk(c, out[node.name])

    walk(scenario.org, [])
    return out


def _reduce_tree(scenario: Scenario, pins: list[Pin]) -> OrgNode:
    """Pinned GPUs count against each ancestor's guarantee and limit."""
    ancestry = _ancestry(scenario)
    team_of = {r.id: r.team for r in scenario.requests}
    per_node: dict[str, dict[str, int]] = {}
    for pin in pins:
        for node in ancestry[team_of[pin.request]]:
            acc = per_node.setdefault(node, {})
            for gpu, n in _pinned_types(scenario, pin).items():
                acc[gpu] = acc.get(gpu, 0) + n

    def rebuild(node: OrgNode) -> OrgNode:
        taken = per_node.get(node.name, {})
        return node.model_copy(update={
            "guarantee": {g: max(0, v - taken.get(g, 0)) for g, v in node.guarantee.items()},
            "limit": {g: max(0, v - taken.get(g, 0)) for g, v in node.limit.items()},
            "children": [rebuild(c) for c in node.children],
        })

    return rebuild(scenario.org)


def _merge(scenario: Scenario, alloc: Allocation, pinned: dict[str, Pin]) -> Allocation:
    gpu_of = {p.name: p.gpu for p in scenario.pools}
    solved = {r.id: r for r in alloc.requests}
    requests: list[RequestResult] = []
    for req in scenario.requests:
        pin = pinned.get(req.id)
        if pin is None:
            requests.append(solved[req.id])
            continue
        gpus = {pool: n for pool, n in pin.gpus.items() if n > 0}
        requests.append(RequestResult(
            id=req.id, team=req.team, demand=req.gpus, min=req.min,
            weight=round(request_weight(req, scenario.policy), 6), gpus={k: float(v) for k, v in gpus.items()},
            effective=round(sum(speed_on(req, gpu_of[p]) * n for p, n in gpus.items()), 9),
            reason=Reason("override", f"set to {sum(gpus.values()):,} GPUs by the committee: {pin.reason}")))
    ancestry = _ancestry(scenario)
    nodes = {n.name: n for n in alloc.nodes}
    extra_gpus: dict[str, dict[str, float]] = {}
    extra_eff: dict[str, float] = {}
    extra_demand: dict[str, int] = {}
    for r in requests:
        if r.id not in pinned:
            continue
        for node in ancestry[r.team]:
            acc = extra_gpus.setdefault(node, {})
            for pool, n in r.gpus.items():
                acc[gpu_of[pool]] = acc.get(gpu_of[pool], 0.0) + n
            extra_eff[node] = extra_eff.get(node, 0.0) + r.effective
            extra_demand[node] = extra_demand.get(node, 0) + r.demand
    merged_nodes = []
    for name, n in nodes.items():
        gpus = dict(n.gpus)
        for gpu, v in extra_gpus.get(name, {}).items():
            gpus[gpu] = gpus.get(gpu, 0) + v
        merged_nodes.append(NodeResult(n.name, n.parent, n.weight, n.demand + extra_demand.get(name, 0),
                                       round(n.effective + extra_eff.get(name, 0.0), 9), gpus))
    pinned_per_pool: dict[str, float] = {}
    for r in requests:
        if r.id in pinned:
            for pool, n in r.gpus.items():
                pinned_per_pool[pool] = pinned_per_pool.get(pool, 0.0) + n
    pools = [PoolResult(p.name, p.gpu, p.site, p.gpus, a.allocated + pinned_per_pool.get(p.name, 0.0))
             for p, a in zip(scenario.pools, alloc.pools)]
    return replace(alloc, requests=requests, nodes=merged_nodes, pools=pools,
                   fairness=_fairness(scenario, requests, alloc.fairness.below_min))


def _fairness(scenario: Scenario, requests: list[RequestResult], below_min: list[str]) -> Fairness:
    """The engine's fairness metrics, over every request (pinned ones included): Jain's index of
    the teams' effective GPUs per unit of weight, and the team with the smallest share of its demand."""
    weight = {n.name: n.weight for n in scenario.nodes()}
    eff: dict[str, float] = {}
    got: dict[str, float] = {}
    asked: dict[str, int] = {}
    for r in requests:
        eff[r.team] = eff.get(r.team, 0.0) + r.effective
        got[r.team] = got.get(r.team, 0.0) + r.total
        asked[r.team] = asked.get(r.team, 0) + r.demand
    teams = sorted(eff)
    ratios = [eff[t] / weight[t] for t in teams]
    squares = sum(v * v for v in ratios)
    jain = sum(ratios) ** 2 / (len(ratios) * squares) if ratios and squares > 0 else 1.0
    shares = [(got[t] / asked[t] if asked[t] else 1.0, t) for t in teams]
    least = min(shares) if shares else None
    return Fairness(jain_index=round(jain, 6), least_satisfied_team=least[1] if least else None,
                    least_satisfied_share=round(least[0], 6) if least else None, below_min=list(below_min))
