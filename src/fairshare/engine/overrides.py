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
from dataclasses import dataclass

import numpy as np

from fairshare.engine._allocate import ExactSolution, allocate, publish, settle, solve_exact
from fairshare.engine._problem import Problem, compile_scenario
from fairshare.engine._result import Allocation, Reason, ReasonCode
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
    scenario: Scenario, request_id: str, total: int, current: dict[str, int], taken: dict[str, int] | None = None
) -> dict[str, int]:
    """Spread `total` GPUs over the request's pools: keep what it has, trim the slowest pools
    first, grow on the fastest pools first, never past a pool's capacity minus `taken`."""
    req = _request(scenario, request_id)
    pools = scenario.usable_pools(req)
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
        raise OverrideError(
            f"request {request_id!r} can use at most {total + excess} GPUs of its pools "
            f"({', '.join(p.name for p in pools)}); {total} cannot be pinned"
        )
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
    reduced = scenario.model_copy(
        update={
            "pools": [p.model_copy(update={"gpus": p.gpus - used.get(p.name, 0)}) for p in scenario.pools],
            "org": _reduce_tree(scenario, pins),
            "requests": [r for r in scenario.requests if r.id not in pinned],
        }
    )
    sol = solve_exact(reduced)
    x, reasons = settle(sol, fractional=False)
    whole = compile_scenario(scenario)
    x, reasons = _map_back(whole, sol, x, reasons, pinned)
    return publish(scenario, whole, x, reasons, sol, False, time.perf_counter() - start)


@dataclass(frozen=True)
class Absorbed:
    """An allocation after a change, and the node whose subtree absorbed it (None: nothing to absorb)."""

    allocation: Allocation
    scope: str | None


def absorb(scenario: Scenario, base: Allocation, pins: list[Pin], changed: str) -> Absorbed:
    """The allocation with `pins` honoured, after the pin of request `changed` was set, changed
    or removed, absorbed by the smallest subtree around it that can: going up from the request's
    team, each subtree is re-solved with every request outside it held at `base`; the first whose
    re-solve fits in the pools and leaves no GPU idle that `base` used is the answer.  The root
    always is (a plain re-solve with the pins)."""
    team = _request(scenario, changed).team
    path = _ancestry(scenario)[team]
    used_before = _pool_use(base)
    for node in path[:-1]:
        inside = _subtree(scenario, node)
        held = [
            Pin(r.id, {p: int(round(n)) for p, n in r.gpus.items() if n > 0}, "held", held=r.reason)
            for r in base.requests
            if r.team not in inside
        ]
        mine = [p for p in pins if _request(scenario, p.request).team in inside]
        try:
            alloc = allocate_with_pins(scenario, held + mine)
        except (OverrideError, InfeasibleGuarantees):
            continue  # the subtree cannot hold the change with everyone outside it where they were
        used = _pool_use(alloc)
        if all(used.get(p, 0) >= n for p, n in used_before.items()):
            return Absorbed(alloc, node)
    return Absorbed(allocate_with_pins(scenario, pins), path[-1])


def allocate_in_order(scenario: Scenario, pins: list[Pin]) -> Allocation:
    """The allocation with the pins made one after the other (oldest first), each absorbed by its
    own branch (`absorb`): what a round's overrides and rulings gave when they were made."""
    alloc = allocate(scenario)
    for i, pin in enumerate(pins):
        alloc = absorb(scenario, alloc, pins[: i + 1], pin.request).allocation
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
