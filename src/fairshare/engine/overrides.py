"""Committee overrides: pin a request at a number of GPUs and re-solve everyone else around it.

A reduction: a pin takes its GPUs out of the pools before the engine runs, counts them against
the guarantees and limits of the request's ancestors, and removes the request from the solve;
the engine shares what is left as usual, and its answer is mapped back onto the whole scenario
with the pinned GPUs in place, then published by the engine's own assembly (same numbers,
same fairness metrics as any allocation).  Pure: no I/O.

A change is absorbed by the request's own branch first (`absorb`): every request outside the
smallest subtree around the request that can take the change is held at the allocation before
it, so the GPUs a pin adds come from (and the GPUs it frees go to) its siblings, then its team's
sibling teams, and so on up the tree only as far as needed.  `allocate_in_order` replays a
round's overrides that way, oldest first, so a re-solve gives the numbers the committee saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from fairshare.engine._allocate import ExactSolution, allocate, publish, settle, solve_exact
from fairshare.engine._problem import Problem, compile_scenario
from fairshare.engine._result import Allocation, Reason, ReasonCode, RequestResult
from fairshare.errors import InfeasibleGuarantees, UserError
from fairshare.scenario import OrgNode, Request, Scenario


class OverrideError(UserError, ValueError):
    """A pin that cannot be honoured (unknown pool, unusable type, over capacity)."""


@dataclass(frozen=True)
class Pin:
    request: str
    gpus: dict[str, int]  # pool -> GPUs
    reason: str
    held: Reason | None = None  # not a committee's pin: a request held where it was, keeping this reason


def speed_on(req: Request, gpu: str) -> float:
    return 1.0 if req.speed is None else req.speed.get(gpu, 0.0)


def place(
    scenario: Scenario,
    request_id: str,
    total: int,
    current: dict[str, int],
    taken: dict[str, int] | None = None,
    base: Allocation | None = None,
) -> dict[str, int]:
    """Spread `total` GPUs over the request's pools: keep what it has, trim the slowest pools
    first, grow first where it costs the fewest other branches (`_closeness`, given the round's
    allocation `base`), fastest pool first among equals, never past a pool's capacity minus `taken`."""
    req = _request(scenario, request_id)
    pools = scenario.usable_pools(req)
    if not pools and total > 0:
        raise OverrideError(f"request {request_id!r} can use no pool, so no GPUs can be pinned to it")
    if total < 0:
        raise OverrideError(f"cannot pin {total} GPUs to request {request_id!r}; a pin is 0 GPUs or more")
    taken = taken or {}
    by_speed = sorted(pools, key=lambda p: (-speed_on(req, p.gpu), scenario.pools.index(p)))
    near = _closeness(scenario, req, base) if base is not None else {}
    to_grow = sorted(by_speed, key=lambda p: near.get(p.name, 0))  # stable: fastest first among equals
    free = {p.name: max(p.gpus - taken.get(p.name, 0), 0) for p in pools}
    # keep what it has, but never more than a pool has left once other pins are taken out
    out = {p.name: min(max(int(current.get(p.name, 0)), 0), free[p.name]) for p in pools}
    excess = sum(out.values()) - total
    for p in reversed(by_speed):
        cut = min(max(excess, 0), out[p.name])
        out[p.name] -= cut
        excess -= cut
    for p in to_grow:
        room = free[p.name] - out[p.name]
        add = min(max(-excess, 0), max(room, 0))
        out[p.name] += add
        excess += add
    if excess < 0:
        raise OverrideError(
            f"request {request_id!r} can use at most {total + excess} GPUs of its pools "
            f"({', '.join(p.name for p in pools)}); {total} cannot be pinned"
        )
    return {k: v for k, v in out.items() if v > 0}


def _closeness(scenario: Scenario, req: Request, base: Allocation) -> dict[str, int]:
    """Pool -> how far up the request's branch one must go to find the GPUs it would take there:
    -1 for idle GPUs (nobody pays), 0 for its own team's, 1 for its team's siblings', and so on;
    a pool nobody near holds counts as the root's.  Growing on the closest pools first lets its
    own branch absorb the change (`absorb`)."""
    ancestry = _ancestry(scenario)
    path = ancestry[req.team]
    level = {node: i for i, node in enumerate(path)}
    held: dict[str, int] = {}  # pool -> GPUs held in base
    out: dict[str, int] = {}
    for r in base.requests:
        if r.id == req.id:
            continue
        common = next(level[n] for n in ancestry[r.team] if n in level)  # the lowest shared ancestor
        for pool, n in r.gpus.items():
            if n > 0:
                held[pool] = held.get(pool, 0) + int(round(n))
                out[pool] = min(out.get(pool, len(path)), common)
    for p in scenario.pools:
        mine = int(round(sum(r.gpus.get(p.name, 0) for r in base.requests if r.id == req.id)))
        if p.gpus - held.get(p.name, 0) - mine > 0:
            out[p.name] = -1
    return out


def allocate_with_pins(
    scenario: Scenario, pins: list[Pin], solve_on: Scenario | None = None, *, check_reasons: bool = True
) -> Allocation:
    """The engine's allocation with every pinned request held at its pinned GPUs.  `solve_on`, the
    same lab with tighter demands, limits or guarantees (`absorb`'s bounds), is solved in its place;
    the answer is published against `scenario` (its demands, its weights).  check_reasons: as
    `allocate`'s."""
    if not pins:
        return allocate(scenario, check_reasons=check_reasons)
    pinned: dict[str, Pin] = {}
    for pin in pins:
        if pin.request in pinned:
            raise OverrideError(f"request {pin.request!r} is pinned twice; keep one override per request")
        pinned[pin.request] = pin
    pool_of = {p.name: p for p in scenario.pools}
    used: dict[str, int] = {}
    for pin in pins:
        req = _request(scenario, pin.request)
        allowed = {p.name for p in scenario.usable_pools(req)}
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
    start = time.perf_counter()
    solved = solve_on or scenario
    reduced = solved.model_copy(
        update={
            "pools": [p.model_copy(update={"gpus": p.gpus - used.get(p.name, 0)}) for p in solved.pools],
            "org": _reduce_tree(solved, pins),
            "requests": [r for r in solved.requests if r.id not in pinned],
        }
    )
    sol = solve_exact(reduced)
    # under absorb's bounds the caps bind nothing a user could lift (its reasons are _paid_by's)
    x, reasons = settle(sol, fractional=False, check=check_reasons and solve_on is None)
    whole = compile_scenario(scenario)
    x, reasons = _map_back(whole, sol, x, reasons, pinned)
    return publish(scenario, whole, x, reasons, sol, False, time.perf_counter() - start)


@dataclass(frozen=True)
class Absorbed:
    """An allocation after a change, and the node whose subtree absorbed it (None: nothing to absorb)."""

    allocation: Allocation
    scope: str | None


def absorb(
    scenario: Scenario, base: Allocation, pins: list[Pin], changed: str, *, check_reasons: bool = True
) -> Absorbed:
    """The allocation with `pins` honoured, after the pin of request `changed` was set, changed
    or removed, absorbed by the smallest subtree around it that can.  Going up from the request's
    team, each subtree is re-solved with every request outside it held at `base`, first with the
    change's bounds inside it (`_bounded`: when the pin adds GPUs nobody inside gains, when it frees
    GPUs nobody inside loses), then without; the first re-solve that fits in the pools and leaves
    no GPU idle that `base` used is the answer.  The root always fits (a plain re-solve)."""
    team = _request(scenario, changed).team
    path = _ancestry(scenario)[team]
    used_before = _pool_use(base)
    pin = next((p for p in pins if p.request == changed), None)
    for node in path:
        inside = _subtree(scenario, node)
        held = [_held(r) for r in base.requests if r.team not in inside]
        mine = [p for p in pins if _request(scenario, p.request).team in inside]
        bounded = _bounded(scenario, base, pin, mine, inside)
        for solve_on, zero in [bounded, (None, [])] if bounded else [(None, [])]:
            try:
                alloc = allocate_with_pins(scenario, held + mine + zero, solve_on, check_reasons=check_reasons)
            except (OverrideError, InfeasibleGuarantees):
                continue  # the subtree cannot hold the change with everyone outside it where they were
            used = _pool_use(alloc)
            if all(used.get(p, 0) >= n for p, n in used_before.items()):
                if solve_on is not None:
                    alloc = _paid_by(alloc, base, {p.request for p in mine}, inside, node, changed)
                return Absorbed(alloc, node)
    return Absorbed(allocate_with_pins(scenario, pins, check_reasons=check_reasons), path[-1])


def _held(r: RequestResult) -> Pin:
    """Request `r` held where it is, keeping its reason."""
    return Pin(r.id, {p: int(round(n)) for p, n in r.gpus.items() if n > 0}, "held", held=r.reason)


def _bounded(
    scenario: Scenario, base: Allocation, pin: Pin | None, mine: list[Pin], inside: set[str]
) -> tuple[Scenario, list[Pin]] | None:
    """The lab in which the subtree `inside` absorbs `pin` and nothing else moves: when the pin adds
    GPUs, every other request inside is capped at its GPUs in `base` (held at 0 where it had none)
    and every node inside at its GPUs per type; when it frees GPUs, every node inside keeps at
    least its GPUs per type.  None when the change moves no GPU in total (or is a removal)."""
    if pin is None:
        return None
    was = {r.id: r for r in base.requests}
    added = sum(pin.gpus.values()) - int(round(was[pin.request].total))
    if added == 0:
        return None
    pinned = {p.request for p in mine}
    gpu_of = {p.name: p.gpu for p in scenario.pools}
    use: dict[str, dict[str, int]] = {}  # node -> GPU type -> GPUs its subtree holds after the change
    ancestry = _ancestry(scenario)
    for r in scenario.requests:
        held = pin.gpus if r.id == pin.request else {p: int(round(n)) for p, n in was[r.id].gpus.items()}
        for node in ancestry[r.team]:
            for pool, n in held.items():
                if pool in gpu_of:  # an unknown pool is refused by allocate_with_pins
                    acc = use.setdefault(node, {})
                    acc[gpu_of[pool]] = acc.get(gpu_of[pool], 0) + n
    zero: list[Pin] = []
    requests = []
    for r in scenario.requests:
        had = int(round(was[r.id].total))
        if added > 0 and r.team in inside and r.id not in pinned:
            if had == 0:
                zero.append(Pin(r.id, {}, "held", held=was[r.id].reason))
            r = r.model_copy(update={"gpus": min(r.gpus, had)})
        requests.append(r)

    def bound(node: OrgNode) -> OrgNode:
        children = [bound(c) for c in node.children]
        if node.name not in inside:
            return node.model_copy(update={"children": children})
        mine_now = use.get(node.name, {})
        if added > 0:
            types = set(node.limit) | set(mine_now) | {p.gpu for p in scenario.pools}
            # never above what it holds after the change, nor above its own limit
            limit = {g: min(node.limit.get(g, mine_now.get(g, 0)), mine_now.get(g, 0)) for g in types}
            guarantee = {g: min(v, limit[g]) for g, v in node.guarantee.items()}
        else:
            guarantee = {g: max(node.guarantee.get(g, 0), n) for g, n in mine_now.items()}
            guarantee = {g: min(v, node.limit[g]) if g in node.limit else v for g, v in guarantee.items()}
            limit = dict(node.limit)
        return node.model_copy(update={"limit": limit, "guarantee": guarantee, "children": children})

    return scenario.model_copy(update={"requests": requests, "org": bound(scenario.org)}), zero


def _paid_by(
    alloc: Allocation, base: Allocation, pinned: set[str], inside: set[str], node: str, changed: str
) -> Allocation:
    """`alloc` solved under `_bounded`'s caps, with reasons that say what the change did to each
    request inside `node` (the caps themselves bind nothing a user could lift)."""
    was = {r.id: r for r in base.requests}
    out = []
    for r in alloc.requests:
        if r.team in inside and r.id not in pinned:
            before, now = int(round(was[r.id].total)), int(round(r.total))
            if now < before:
                text = (
                    f"gave up {before - now:,} of its {before:,} GPUs to the committee's change to {changed!r}: "
                    f"a change is paid by its own branch first, here inside {node!r}"
                )
                r = replace(r, reason=Reason(ReasonCode.fair_share, text, node=node))
            elif now > before:
                text = (
                    f"received {now - before:,} of the GPUs the committee's change to {changed!r} freed inside {node!r}"
                )
                r = replace(r, reason=Reason(ReasonCode.fair_share, text, node=node))
            else:
                r = replace(r, reason=was[r.id].reason)
        out.append(r)
    return replace(alloc, requests=out)


def allocate_in_order(scenario: Scenario, pins: list[Pin], *, check_reasons: bool = True) -> Allocation:
    """The allocation with the pins made one after the other (oldest first), each absorbed by its
    own branch (`absorb`): what a round's overrides and rulings gave when they were made.
    Only the last step's reasons are checked by re-solving (check_reasons: as `allocate`'s)."""
    alloc = allocate(scenario, check_reasons=check_reasons and not pins)
    for i, pin in enumerate(pins):
        last = i == len(pins) - 1
        alloc = absorb(scenario, alloc, pins[: i + 1], pin.request, check_reasons=check_reasons and last).allocation
    return alloc


def _pool_use(alloc: Allocation) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in alloc.requests:
        for p, n in r.gpus.items():
            out[p] = out.get(p, 0) + int(round(n))
    return out


def _subtree(scenario: Scenario, name: str) -> set[str]:
    node = next(n for n in scenario.org.walk() if n.name == name)
    return {n.name for n in node.walk()}


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
        return node.model_copy(
            update={
                "guarantee": {g: max(0, v - taken.get(g, 0)) for g, v in node.guarantee.items()},
                "limit": {g: max(0, v - taken.get(g, 0)) for g, v in node.limit.items()},
                "children": [rebuild(c) for c in node.children],
            }
        )

    return rebuild(scenario.org)


def _map_back(
    whole: Problem, sol: ExactSolution, x: np.ndarray, reasons: list[Reason], pinned: dict[str, Pin]
) -> tuple[np.ndarray, list[Reason]]:
    """The reduced problem's answer (GPUs per cell, reasons) on the whole problem's cells, with
    every pinned request at its pin.  Every cell of the reduced problem is one of the whole's
    (same requests and pools, capacities only smaller), and so is every pinned pool (a pin
    names only pools the request may use, and takes GPUs the pool has)."""
    n_pools = len(whole.pool_cap)
    cell_key = whole.cell_req * n_pools + whole.cell_pool  # ascending: cells go by request, then pool
    index = {rid: i for i, rid in enumerate(whole.req_ids)}
    part = sol.problem
    in_whole = np.array([index[rid] for rid in part.req_ids], dtype=np.int64)
    out = np.zeros(whole.n_cells)
    out[np.searchsorted(cell_key, in_whole[part.cell_req] * n_pools + part.cell_pool)] = x
    why: list[Reason | None] = [None] * whole.n_requests
    for r, reason in zip(in_whole.tolist(), reasons, strict=True):
        why[r] = reason
    pool_index = {name: p for p, name in enumerate(whole.pool_names)}
    for pin in pinned.values():
        r = index[pin.request]
        for pool, n in pin.gpus.items():
            if n > 0:
                out[np.searchsorted(cell_key, r * n_pools + pool_index[pool])] = n
        why[r] = pin.held or Reason(
            ReasonCode.override,
            f"set to {sum(n for n in pin.gpus.values() if n > 0):,} GPUs by the committee: {pin.reason}",
        )
    assert all(w is not None for w in why), "every request is solved or pinned"
    return out, [w for w in why if w is not None]
