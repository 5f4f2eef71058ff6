"""Fairness over time from the database: the published and final rounds, oldest first, each on its
own frozen world, with the GPU-hours used while it was in force (docs/health.md).

A read, not a state change: no use case, no audit entry.  A round is in force from its publication
until the next round's publication (the newest until `now`); usage rows count by the part of their
period that falls in that span.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.engine import Allocation, Fairness, NodeResult, Reason, ReasonCode, RequestResult, Stats
from fairshare.engine.health import Health, HealthRules, KeptSolves, RoundInput, health, round_key
from fairshare.errors import NotFound, UserError
from fairshare.scenario import OrgNode, Scenario
from fairshare.service.ops.rounds import active_pins, check_visible
from fairshare.store import models as m
from fairshare.store.repo import round_scenario

PUBLISHED = (wf.RoundState.published.value, wf.RoundState.final.value)
# Each round's solved steps (up to six solves of the lab), by a digest of its world, published GPUs and
# pins: GET /health, the health and team pages, publish's confirmation and /metrics read the same past
# rounds again and again, and a published round does not change unless it is solved again.
KEPT = KeptSolves(64)


def published_rounds(session: Session, names: Sequence[str] = (), last: int | None = None) -> list[m.Round]:
    """The published and final rounds, oldest publication first: the ones named (every name must be
    one), else all of them, then only the `last` few."""
    if last is not None and last < 1:
        raise UserError(f"rounds must be at least 1, not {last}")
    rows = list(
        session.scalars(select(m.Round).where(m.Round.state.in_(PUBLISHED)).order_by(m.Round.published_at, m.Round.id))
    )
    if names:
        by_name = {r.name: r for r in rows}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise NotFound(
                f"no published round named {', '.join(map(repr, unknown))}; published rounds: "
                f"{', '.join(r.name for r in rows) or 'none yet'}"
            )
        wanted = set(names)
        rows = [r for r in rows if r.name in wanted]
    return rows[-last:] if last else rows


def stored_allocation(session: Session, rnd: m.Round) -> Allocation:
    """The round's published allocation as stored (its requests' and nodes' rows), not solved again."""
    run = session.get(m.Run, rnd.current_run_id) if rnd.current_run_id is not None else None
    if run is None:
        raise NotFound(f"round {rnd.name!r} has no published allocation")
    reqs = session.scalars(select(m.RequestResult).where(m.RequestResult.run_id == run.id).order_by(m.RequestResult.id))
    nodes = session.scalars(select(m.NodeResult).where(m.NodeResult.run_id == run.id).order_by(m.NodeResult.id))
    return Allocation(
        scenario=rnd.name,
        fractional=False,
        requests=[
            RequestResult(
                r.key,
                r.team,
                r.demand,
                None,
                r.weight,
                dict(r.gpus),
                r.effective,
                Reason(ReasonCode(r.reason_code), r.reason, r.level),
            )
            for r in reqs
        ],
        nodes=[
            NodeResult(
                n.node,
                n.data.get("parent"),
                float(n.data.get("weight", 1.0)),
                int(n.data.get("demand", 0)),
                float(n.data.get("effective", 0.0)),
                dict(n.data.get("gpus", {})),
            )
            for n in nodes
        ],
        pools=[],
        fairness=Fairness(**run.fairness) if run.fairness else Fairness(1.0, None, None),
        stats=Stats(run.solve_seconds, 0, 0, 0, 0),
    )


def used_between(session: Session, start: dt.datetime, end: dt.datetime) -> dict[str, float]:
    """GPU-hours per node in [start, end): each usage row by the share of its period inside."""
    rows = session.scalars(select(m.Usage).where(m.Usage.period_end > start, m.Usage.period_start < end))
    out: dict[str, float] = {}
    for u in rows:
        span = (u.period_end - u.period_start).total_seconds()
        inside = (min(u.period_end, end) - max(u.period_start, start)).total_seconds()
        if span > 0 and inside > 0:
            out[u.node] = out.get(u.node, 0.0) + u.gpu_hours * inside / span
    return out


def round_inputs(session: Session, rows: Sequence[m.Round], now: dt.datetime) -> list[RoundInput]:
    """Each round on its own world with its published allocation, pins and usage while in force."""
    out = []
    for i, rnd in enumerate(rows):
        start = rnd.published_at or rnd.created_at
        following = rows[i + 1].published_at if i + 1 < len(rows) else None
        end = following or now
        used = used_between(session, start, end) if end > start else {}
        scenario = round_scenario(session, rnd)
        allocation, pins = stored_allocation(session, rnd), active_pins(session, rnd)
        out.append(
            RoundInput(
                name=rnd.name,
                scenario=scenario,
                allocation=allocation,
                pins=pins,
                key=round_key(scenario, allocation, pins),
                used=_with_branches(used, scenario) if used else None,
                hours=max((end - start).total_seconds() / 3600, 0.0),
            )
        )
    return out


def _with_branches(used: dict[str, float], scenario: Scenario) -> dict[str, float]:
    """Usage is imported per node (usually teams); a branch used what its subtree used."""
    out: dict[str, float] = {}

    def total(node: OrgNode) -> float:
        out[node.name] = used.get(node.name, 0.0) + sum(total(c) for c in node.children)
        return out[node.name]

    total(scenario.org)
    return out


def lab_health(
    session: Session,
    actor: wf.Actor,
    now: dt.datetime,
    names: Sequence[str] = (),
    last: int | None = None,
    rules: HealthRules | None = None,
) -> Health:
    """Health over the published rounds (all, the named ones, or the `last` few), oldest first."""
    rows = published_rounds(session, names, last)
    if not rows:
        raise NotFound("no published rounds yet; health reads published and final rounds")
    for rnd in rows:
        check_visible(actor, rnd.id, rnd.state, rnd.current_run_id)
    return assess(session, rows, now, rules)


def assess(session: Session, rows: Sequence[m.Round], now: dt.datetime, rules: HealthRules | None = None) -> Health:
    """`fairshare.engine.health.health` over these rounds, reusing the rounds already solved (KEPT)."""
    return health(round_inputs(session, rows, now), rules, KEPT)
