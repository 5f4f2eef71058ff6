"""Rounds: create one, step it through the workflow, solve it, and read what it decided.

Each use case asks `fairshare.workflow` whether the step is legal, changes rows and writes the
audit log, as one transaction (`unit.use_case`).  `solve` is a step inside a use case; it never
commits on its own.  HTTP lives in `service/api/routes/`, pages in `service/web/`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.engine import Allocation
from fairshare.engine.entitlements import entitlements
from fairshare.engine.overrides import Pin, allocate_in_order
from fairshare.scenario import Policy
from fairshare.service.ops.previews import Preview, holding_of, holding_of_rows, moves
from fairshare.service.ops.unit import after_commit, use_case
from fairshare.store import models as m
from fairshare.store.repo import NotFound, audit, freeze_world, lab, org_tree, root_node, round_scenario

OnPublished = Callable[[int], None]
"""Told a round's id after a commit that changed its published allocation (to push it to the schedulers)."""


def get_round(session: Session, round_id: int, *, lock: bool = False) -> m.Round:
    stmt = select(m.Round).where(m.Round.id == round_id)
    if lock:
        stmt = stmt.with_for_update(of=m.Round)
    rnd = session.scalars(stmt).first()
    if rnd is None:
        raise NotFound(f"no round with id {round_id}")
    return rnd


def request_in_round(session: Session, rnd: m.Round, key: str) -> m.Request:
    """A live request of the round by its id; a withdrawn one is gone for every purpose (overrides, appeals)."""
    req = session.scalars(select(m.Request).where(m.Request.round_id == rnd.id, m.Request.key == key)).first()
    if req is None or req.withdrawn:
        raise NotFound(f"no request {key!r} in round {rnd.id}")
    return req


def lock(session: Session, rnd: m.Round) -> m.Round:
    """Lock the round's row and read it again: concurrent steps, overrides and rulings of one
    round queue here instead of each acting on the state it read before the other committed."""
    session.refresh(rnd, with_for_update={"of": m.Round})
    return rnd


def check_visible(actor: wf.Actor, round_id: int, state: str, current_run_id: int | None) -> None:
    """May `actor` read the round's proposal?  (Its entitlements, allocation, runs and overrides.)"""
    if current_run_id is None:
        raise NotFound(f"round {round_id} has no proposal yet; the committee proposes it after closing")
    if not wf.allocation_visible(wf.RoundState(state), actor):
        raise wf.Forbidden(
            f"round {round_id} is {state}; its proposal is visible to the committee only until it is published"
        )


def visible_round(session: Session, actor: wf.Actor, round_id: int) -> m.Round:
    """The round, if `actor` may read its proposal."""
    rnd = get_round(session, round_id)
    check_visible(actor, round_id, rnd.state, rnd.current_run_id)
    return rnd


def round_summary(rnd: m.Round) -> dict[str, Any]:
    return {"state": rnd.state, "version": rnd.version, "current_run_id": rnd.current_run_id}


def appeal_window_ends(rnd: m.Round) -> dt.datetime | None:
    if rnd.published_at is None:
        return None
    return rnd.published_at + dt.timedelta(hours=rnd.appeal_window_hours)


@use_case
def create_round(
    session: Session,
    actor: wf.Actor,
    name: str,
    policy: Policy | None,
    appeal_window_hours: float,
    appeal_response_hours: float,
    audit_data: dict[str, Any],
    date: dt.date | None = None,
) -> m.Round:
    """A draft round run by the root's committee, on the lab's policy unless it brings its own; `date` is
    the round's own date (its policy's, from which urgency counts), not the lab's."""
    root = root_node(session)
    wf.check_run_round(actor, org_tree(session), root.name)
    taken = session.scalars(select(m.Round.id).where(m.Round.name == name)).first()
    if taken is not None:
        raise wf.IllegalTransition(f"round {name!r} exists (id {taken}); choose another name")
    policy = policy or Policy.model_validate(lab(session).policy or {})
    if date is not None:
        policy = policy.model_copy(update={"date": date})
    rnd = m.Round(
        name=name,
        node_id=root.id,
        policy=policy.model_dump(mode="json"),
        appeal_window_hours=appeal_window_hours,
        appeal_response_hours=appeal_response_hours,
    )
    session.add(rnd)
    session.flush()
    audit(session, actor.name, "round.create", "round", rnd.id, None, audit_data)
    after_commit(session, lambda: session.refresh(rnd))
    return rnd


@use_case
def step_round(
    session: Session,
    actor: wf.Actor,
    rnd: m.Round,
    step: str,
    now: dt.datetime,
    solve_timer: Any = None,
    on_published: OnPublished | None = None,
) -> m.Round:
    """open / close / reopen / propose / publish / finalize; a publish changes the published
    allocation, so `on_published` hears of it after the commit."""
    lock(session, rnd)
    wf.check_run_round(actor, org_tree(session), rnd.node.name)
    pending = open_appeals(session, rnd) if step == "finalize" else 0
    before = round_summary(rnd)
    target = wf.round_step(
        wf.RoundState(rnd.state), step, now=now, appeal_window_ends=appeal_window_ends(rnd), pending_appeals=pending
    )
    if target in (wf.RoundState.draft, wf.RoundState.open):
        rnd.world = None  # (re)opened: the lab's edits reach it again until it closes
    else:
        freeze_world(session, rnd)  # closed or later: it keeps the world it closed with
    if step == "propose":
        solve(session, rnd, trigger=f"propose by {actor.name}", timer=solve_timer)
    if step == "publish":
        rnd.published_at = now
    rnd.state = target.value
    session.flush()
    audit(session, actor.name, f"round.{step}", "round", rnd.id, before, round_summary(rnd))
    if step == "publish" and on_published is not None:
        after_commit(session, lambda: on_published(rnd.id))
    return rnd


def active_overrides(session: Session, rnd: m.Round) -> list[tuple[m.Override, str]]:
    """The round's active overrides, oldest first, each with its request's key."""
    rows = session.execute(
        select(m.Override, m.Request.key)
        .join(m.Request, m.Request.id == m.Override.request_id)
        .where(m.Override.round_id == rnd.id, m.Override.active.is_(True))
        .order_by(m.Override.id)
    ).all()
    return [(o, key) for o, key in rows]


def pin_of(row: m.Override, key: str) -> Pin:
    """An override as the engine's pin."""
    return Pin(key, {k: int(v) for k, v in row.gpus.items()}, row.reason)


def active_pins(session: Session, rnd: m.Round) -> list[Pin]:
    return [pin_of(o, key) for o, key in active_overrides(session, rnd)]


def open_appeals(session: Session, rnd: m.Round) -> int:
    """How many of the round's appeals await a ruling (finalize waits for them)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(m.Appeal)
            .where(m.Appeal.round_id == rnd.id, m.Appeal.state == wf.AppealState.open.value)
        )
        or 0
    )


def solve(session: Session, rnd: m.Round, trigger: str, timer: Any = None, alloc: Allocation | None = None) -> m.Run:
    """Run the engine on the round (its active overrides replayed oldest first, each absorbed by its own
    branch) and store the result as its current run: one row per request, one entitlement per node;
    `alloc`: that answer, already computed by the caller's plan.  A step of a use case: no commit.
    With policy.history on, the nodes' history from past rounds is filled in first (and kept)."""
    from fairshare.service.ops.history import carried_history  # it reads rounds through ops.health, which imports us

    scenario = carried_history(session, rnd, round_scenario(session, rnd))
    start = time.perf_counter()
    alloc = alloc or allocate_in_order(scenario, active_pins(session, rnd))
    elapsed = time.perf_counter() - start
    if timer is not None:
        timer(elapsed)
    run = m.Run(
        round_id=rnd.id,
        trigger=trigger,
        solve_seconds=round(elapsed, 4),
        stats=asdict(alloc.stats),
        fairness=asdict(alloc.fairness),
        pools=[asdict(p) for p in alloc.pools],
    )
    session.add(run)
    session.flush()
    _store_results(session, rnd, run, alloc, scenario)
    rnd.current_run_id = run.id
    return run


def _store_results(session: Session, rnd: m.Round, run: m.Run, alloc: Allocation, scenario: Any) -> None:
    ids = dict(session.execute(select(m.Request.key, m.Request.id).where(m.Request.round_id == rnd.id)).all())
    rows = [
        {
            "run_id": run.id,
            "request_id": ids[r.id],
            "key": r.id,
            "team": r.team,
            "demand": r.demand,
            "total": int(round(r.total)),
            "gpus": {k: int(round(v)) for k, v in r.gpus.items()},
            "effective": r.effective,
            "weight": r.weight,
            "reason_code": r.reason.code,
            "reason": r.reason.text,
            "level": r.reason.level,
        }
        for r in alloc.requests
    ]
    if rows:
        session.execute(insert(m.RequestResult), rows)
    ents = entitlements(scenario, alloc)
    session.execute(
        insert(m.NodeResult), [{"run_id": run.id, "node": name, "data": asdict(e)} for name, e in ents.items()]
    )  # the engine's fields


def preview_propose(session: Session, actor: wf.Actor, round_id: int, now: dt.datetime) -> Preview:
    """What (re-)proposing the round would change against its current proposal, and why it would be
    refused; nothing is saved."""
    rnd = get_round(session, round_id)
    wf.check_run_round(actor, org_tree(session), rnd.node.name)
    try:
        wf.round_step(wf.RoundState(rnd.state), "propose", now=now)
    except wf.IllegalTransition as e:
        return Preview([], str(e), None)
    from fairshare.service.ops.history import carried_history

    scenario = carried_history(session, rnd, round_scenario(session, rnd), keep=False)
    alloc = allocate_in_order(scenario, active_pins(session, rnd))
    before = holding_of_rows(current_results(session, rnd).values())
    return Preview(moves(before, holding_of(alloc)), None, rnd.node.name)


def current_results(session: Session, rnd: m.Round) -> dict[str, m.RequestResult]:
    if rnd.current_run_id is None:
        return {}
    return {
        r.key: r for r in session.scalars(select(m.RequestResult).where(m.RequestResult.run_id == rnd.current_run_id))
    }


# --- reading a round ----------------------------------------------------------------------------


def list_rounds(
    session: Session, state: wf.RoundState | None = None, limit: int | None = None, offset: int = 0
) -> tuple[list[m.Round], int]:
    """Rounds (in `state`, or all), newest first, and how many there are."""
    where = [m.Round.state == state.value] if state else []
    total = session.scalar(select(func.count()).select_from(m.Round).where(*where)) or 0
    rows = session.scalars(select(m.Round).where(*where).order_by(m.Round.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def runs(session: Session, actor: wf.Actor, round_id: int) -> list[m.Run]:
    """Every engine run of the round, newest first."""
    visible_round(session, actor, round_id)
    return list(session.scalars(select(m.Run).where(m.Run.round_id == round_id).order_by(m.Run.id.desc())))


def allocation(
    session: Session, actor: wf.Actor, round_id: int, team: str | None, limit: int, offset: int
) -> tuple[list[m.RequestResult], int]:
    """A page of the proposal's GPUs per request (only `team`'s, if given), and how many there are."""
    rnd = visible_round(session, actor, round_id)
    where = [m.RequestResult.run_id == rnd.current_run_id] + ([m.RequestResult.team == team] if team else [])
    total = session.scalar(select(func.count()).select_from(m.RequestResult).where(*where)) or 0
    rows = session.scalars(
        select(m.RequestResult).where(*where).order_by(m.RequestResult.id).limit(limit).offset(offset)
    )
    return list(rows), total


def node_results(session: Session, actor: wf.Actor, round_id: int) -> tuple[m.Round, list[m.NodeResult]]:
    """The round and what every node of its proposal gets (its entitlements)."""
    rnd = visible_round(session, actor, round_id)
    return rnd, list(
        session.scalars(select(m.NodeResult).where(m.NodeResult.run_id == rnd.current_run_id).order_by(m.NodeResult.id))
    )
