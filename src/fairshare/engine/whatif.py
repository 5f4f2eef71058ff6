"""What-ifs on top of the engine: compare two allocations; explain what would change one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fairshare.engine._allocate import allocate
from fairshare.engine._result import Allocation, ReasonCode
from fairshare.scenario import Scenario


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


@dataclass
class Lever:
    description: str
    gain: float  # GPUs the request would gain
    effective_gain: float  # reference-GPU equivalents it would gain (GPUs of other types count differently)
    funded: bool | None = None


def levers(
    scenario: Scenario, request_id: str, base: Allocation, on_solved: Callable[[int, int], None] | None = None
) -> list[Lever]:
    """Re-solve with one change at a time and report what each would give the request;
    `on_solved(done, total)` before the first and after each re-solve (each is a whole
    allocation: seconds on a big lab)."""
    req = next(r for r in scenario.requests if r.id == request_id)
    mine = base.request(request_id)
    if mine.reason.code == ReasonCode.demand_met:
        return []
    changes: list[tuple[str, Scenario]] = [
        (
            f"weight x{factor:g} ({req.weight:g} -> {req.weight * factor:g})",
            _with_request(scenario, request_id, weight=req.weight * factor),
        )
        for factor in (2.0, 4.0)
    ]
    pools = list(mine.reason.pools) or [p.name for p in scenario.usable_pools(req)]
    for pool_name in pools[:3]:
        pool = next(p for p in scenario.pools if p.name == pool_name)
        extra = max(1, round(pool.gpus * 0.25))
        changes.append(
            (
                f"+{extra} GPUs in pool {pool_name}",
                scenario.model_copy(
                    update={
                        "pools": [
                            p.model_copy(update={"gpus": p.gpus + extra}) if p.name == pool_name else p
                            for p in scenario.pools
                        ]
                    }
                ),
            )
        )
    out: list[Lever] = []
    if on_solved is not None:
        on_solved(0, len(changes))
    for description, changed in changes:
        got = allocate(changed).request(request_id)
        out.append(
            Lever(
                description,
                got.total - mine.total,
                got.effective - mine.effective,
                got.reason.code != ReasonCode.below_min if req.min else None,
            )
        )
        if on_solved is not None:
            on_solved(len(out), len(changes))
    return out


def _with_request(scenario: Scenario, request_id: str, **update: object) -> Scenario:
    return scenario.model_copy(
        update={"requests": [r.model_copy(update=update) if r.id == request_id else r for r in scenario.requests]}
    )
