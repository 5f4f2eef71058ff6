"""What-ifs on a round: change weights, capacities or priorities, or drop requests, and see who
gains and who loses against the round's current allocation.  Nothing is stored.

The same edits for the web's what-if page and the API's `POST /rounds/{id}/whatif`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.engine.overrides import Pin, allocate_in_order
from fairshare.engine.whatif import Change, diff
from fairshare.scenario import Pool, Priority, Scenario, ScenarioError
from fairshare.service.ops.previews import Preview, holding_of, moves
from fairshare.service.ops.rounds import active_pins, get_round
from fairshare.store import models as m
from fairshare.store.repo import round_scenario


@dataclass(frozen=True)
class Edits:
    """What to change: requests to drop, new weights of org nodes, capacities of pools, priorities of requests."""

    drop: frozenset[str] = frozenset()
    weights: dict[str, float] = field(default_factory=dict)
    capacity: dict[str, int] = field(default_factory=dict)
    priorities: dict[str, Priority] = field(default_factory=dict)
    new_pools: list[Pool] = field(default_factory=list)  # pools to add (a new site is a pool at a new site)
    guarantees: dict[str, dict[str, int]] = field(default_factory=dict)  # node -> GPU type -> new floor
    limits: dict[str, dict[str, int]] = field(default_factory=dict)  # node -> GPU type -> new cap
    minimums: dict[str, int | None] = field(default_factory=dict)  # request -> new minimum (None: none)

    def __bool__(self) -> bool:
        return bool(
            self.drop
            or self.weights
            or self.capacity
            or self.priorities
            or self.new_pools
            or self.guarantees
            or self.limits
            or self.minimums
        )


@dataclass(frozen=True)
class Base:
    """A round as a what-if starts from: the round, its scenario and its active overrides."""

    round: m.Round
    scenario: Scenario
    pins: list[Pin]


def start(session: Session, actor: wf.Actor, round_id: int) -> Base:
    """The round to try what-ifs on, if `actor` may see its allocation (workflow.check_what_if)."""
    rnd = get_round(session, round_id)
    wf.check_what_if(actor, wf.RoundState(rnd.state))
    return Base(rnd, round_scenario(session, rnd), active_pins(session, rnd))


def compare(base: Base, edits: Edits) -> list[Change]:
    """GPUs per team and per request, the current allocation against the edited one, biggest
    movers first.  An edit naming something the round does not have: ScenarioError naming it."""
    _check_names(base.scenario, edits)
    before = allocate_in_order(base.scenario, base.pins)  # the round's overrides, as its solve replays them
    after = allocate_in_order(apply(base.scenario, edits), [p for p in base.pins if p.request not in edits.drop])
    return diff(before, after)


def preview(base: Base, edits: Edits) -> Preview:
    """The same edits as the previews' gains/losses table: GPUs and effective GPUs per team and request,
    before and after, teams first, the biggest moves first (only what moves)."""
    _check_names(base.scenario, edits)
    before = allocate_in_order(base.scenario, base.pins)
    after = allocate_in_order(apply(base.scenario, edits), [p for p in base.pins if p.request not in edits.drop])
    return Preview(moves(holding_of(before), holding_of(after)))


def apply(base: Scenario, edits: Edits) -> Scenario:
    """The scenario with the edits made, validated again (a guarantee above capacity, a minimum above
    the request's GPUs or a pool name taken is a ScenarioError naming the field)."""

    def reweigh(node: Any) -> Any:
        return node.model_copy(
            update={
                "weight": edits.weights.get(node.name, node.weight),
                "guarantee": _counts(node.guarantee, edits.guarantees.get(node.name)),
                "limit": _counts(node.limit, edits.limits.get(node.name)),
                "children": [reweigh(c) for c in node.children],
            }
        )

    def request(r: Any) -> Any:
        update: dict[str, Any] = {}
        if r.id in edits.priorities:
            update["priority"] = edits.priorities[r.id]
        if r.id in edits.minimums:
            update["min"] = edits.minimums[r.id]
        return r.model_copy(update=update)

    edited = base.model_copy(
        update={
            "org": reweigh(base.org),
            "pools": [p.model_copy(update={"gpus": edits.capacity.get(p.name, p.gpus)}) for p in base.pools]
            + list(edits.new_pools),
            "requests": [request(r) for r in base.requests if r.id not in edits.drop],
        }
    )
    if not (edits.new_pools or edits.guarantees or edits.limits or edits.minimums):
        return edited
    try:
        return Scenario.model_validate(edited.model_dump())
    except ValidationError as e:
        raise ScenarioError(
            [(tuple(err["loc"]), err["msg"].removeprefix("Value error, ")) for err in e.errors()]
        ) from e


def _counts(now: dict[str, int], new: dict[str, int] | None) -> dict[str, int]:
    """GPU counts per type with `new` ones set (0 removes the type)."""
    if not new:
        return now
    out = {**now, **new}
    return {k: v for k, v in out.items() if v}


def new_pools(raw: list[dict[str, Any]]) -> list[Pool]:
    """Pools to add from plain fields; a bad one is a ScenarioError naming `new_pools[i].field`."""
    out: list[Pool] = []
    errors: list[tuple[tuple[str | int, ...], str]] = []
    for i, fields in enumerate(raw):
        try:
            out.append(Pool.model_validate(fields))
        except ValidationError as e:
            errors += [(("new_pools", i, *e_["loc"]), e_["msg"].removeprefix("Value error, ")) for e_ in e.errors()]
    if errors:
        raise ScenarioError(errors)
    return out


def _check_names(base: Scenario, edits: Edits) -> None:
    nodes = {n.name for n in base.nodes()}
    pools = {p.name for p in base.pools}
    requests = {r.id for r in base.requests}
    errors: list[tuple[tuple[str | int, ...], str]] = []
    for where, named, known, what in (
        ("drop", sorted(edits.drop), requests, "live request"),
        ("weights", list(edits.weights), nodes, "org node"),
        ("capacity", list(edits.capacity), pools, "pool"),
        ("priorities", list(edits.priorities), requests, "live request"),
        ("guarantees", list(edits.guarantees), nodes, "org node"),
        ("limits", list(edits.limits), nodes, "org node"),
        ("minimums", list(edits.minimums), requests, "live request"),
    ):
        errors += [((where, name), f"the round has no {what} {name!r}") for name in named if name not in known]
    gpu_types = {p.gpu for p in base.pools} | {p.gpu for p in edits.new_pools}
    for where, counts in (("guarantees", edits.guarantees), ("limits", edits.limits)):
        for node, per_type in counts.items():
            errors += [((where, node, t), f"the round has no GPU type {t!r}") for t in per_type if t not in gpu_types]
    asked = {r.id: r.gpus for r in base.requests}
    for rid, least in edits.minimums.items():
        if rid in asked and least is not None and least > asked[rid]:
            errors.append((("minimums", rid), f"a minimum of {least:,} is above the {asked[rid]:,} GPUs it asks"))
    taken = {p.name for p in base.pools}
    for i, pool in enumerate(edits.new_pools):
        if pool.name in taken:
            errors.append((("new_pools", i, "name"), f"the round already has a pool named {pool.name!r}"))
        taken.add(pool.name)
    if errors:
        raise ScenarioError(errors)
