"""Round operations: the workflow's transitions, persisted with their audit entries.

Each function asks `fairshare.workflow` whether the step is legal, changes rows, and writes
the audit log in the same transaction; the caller commits.  HTTP lives in `routes/`.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.engine import Allocation
from fairshare.engine.entitlements import entitlements
from fairshare.engine.overrides import Pin, allocate_with_pins, place
from fairshare.store import models as m
from fairshare.scenario import Request, ScenarioError, request_reference_errors
from fairshare.store.repo import NotFound, audit, get_node, org_tree, pool_models, request_fields, round_scenario


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


def round_summary(rnd: m.Round) -> dict[str, Any]:
    return {"state": rnd.state, "version": rnd.version, "current_run_id": rnd.current_run_id}


def appeal_window_ends(rnd: m.Round) -> dt.datetime | None:
    if rnd.published_at is None:
        return None
    return rnd.published_at + dt.timedelta(hours=rnd.appeal_window_hours)


def step_round(session: Session, actor: wf.Actor, rnd: m.Round, step: str, now: dt.datetime,
               solve_timer: Any = None) -> m.Round:
    """open / close / reopen / propose / publish / finalize."""
    wf.check_run_round(actor, org_tree(session), rnd.node.name)
    pending = 0
    if step == "finalize":
        pending = session.scalar(select(func.count()).select_from(m.Appeal).where(
            m.Appeal.round_id == rnd.id, m.Appeal.state == wf.AppealState.open.value)) or 0
    before = round_summary(rnd)
    target = wf.round_step(wf.RoundState(rnd.state), step, now=now, appeal_window_ends=appeal_window_ends(rnd),
                           pending_appeals=pending)
    if step == "propose":
        solve(session, rnd, trigger=f"propose by {actor.name}", timer=solve_timer)
    if step == "publish":
        rnd.published_at = now
    rnd.state = target.value
    session.flush()
    audit(session, actor.name, f"round.{step}", "round", rnd.id, before, round_summary(rnd))
    return rnd


def active_pins(session: Session, rnd: m.Round) -> list[Pin]:
    rows = session.execute(select(m.Override, m.Request.key).join(m.Request, m.Request.id == m.Override.request_id)
                           .where(m.Override.round_id == rnd.id, m.Override.active.is_(True))
                           .order_by(m.Override.id)).all()
    return [Pin(key, {k: int(v) for k, v in o.gpus.items()}, o.reason) for o, key in rows]


def solve(session: Session, rnd: m.Round, trigger: str, timer: Any = None) -> m.Run:
    """Run the engine on the round (honouring active overrides) and store the result as its
    current run: one row per request, one entitlement per node."""
    scenario = round_scenario(session, rnd)
    start = time.perf_counter()
    alloc = allocate_with_pins(scenario, active_pins(session, rnd))
    elapsed = time.perf_counter() - start
    if timer is not None:
        timer(elapsed)
    run = m.Run(round_id=rnd.id, trigger=trigger, solve_seconds=round(elapsed, 4),
                stats=asdict(alloc.stats), fairness=asdict(alloc.fairness),
                pools=[asdict(p) for p in alloc.pools])
    session.add(run)
    session.flush()
    _store_results(session, rnd, run, alloc, scenario)
    rnd.current_run_id = run.id
    return run


def _store_results(session: Session, rnd: m.Round, run: m.Run, alloc: Allocation, scenario: Any) -> None:
    ids = dict(session.execute(select(m.Request.key, m.Request.id).where(m.Request.round_id == rnd.id)).all())
    rows = [{"run_id": run.id, "request_id": ids[r.id], "key": r.id, "team": r.team, "demand": r.demand,
             "total": int(round(r.total)), "gpus": {k: int(round(v)) for k, v in r.gpus.items()},
             "effective": r.effective, "weight": r.weight, "reason_code": r.reason.code, "reason": r.reason.text,
             "level": r.reason.level} for r in alloc.requests]
    if rows:
        session.execute(insert(m.RequestResult), rows)
    ents = entitlements(scenario, alloc)
    session.execute(insert(m.NodeResult), [
        {"run_id": run.id, "node": name, "data": _entitlement_json(e)} for name, e in ents.items()])


def _entitlement_json(e: Any) -> dict[str, Any]:
    return {"node": e.node, "parent": e.parent, "weight": e.weight, "gpus": e.gpus, "total": e.total,
            "demand": e.demand, "effective": e.effective, "fair_share": e.fair_share,
            "share_of_fair": e.share_of_fair, "reason": e.reason, "reasons": e.reasons,
            "siblings": [asdict(s) for s in e.siblings]}


def current_results(session: Session, rnd: m.Round) -> dict[str, m.RequestResult]:
    if rnd.current_run_id is None:
        return {}
    return {r.key: r for r in session.scalars(select(m.RequestResult).where(
        m.RequestResult.run_id == rnd.current_run_id))}


# --- requests -----------------------------------------------------------------------------------


class DuplicateRequest(wf.IllegalTransition):
    """The round already has a request with this id."""


def check_references(session: Session, req: Request) -> None:
    """The checks a scenario file gets, for one request: known team, GPU types and sites
    (a speed for a type no pool has would leave the request able to run nowhere)."""
    pools = pool_models(session)
    errors = request_reference_errors(req, set(org_tree(session).parents), {p.gpu for p in pools},
                                      {p.site for p in pools})
    if errors:
        raise ScenarioError(errors)


def submit_request(session: Session, actor: wf.Actor, rnd: m.Round, body: Request) -> m.Request:
    """A new request from its team while the round is open; version 1 is kept."""
    check_references(session, body)
    wf.check_edit_request(actor, org_tree(session), body.team)
    wf.check_requests_editable(wf.RoundState(rnd.state))
    if session.scalars(select(m.Request.id).where(m.Request.round_id == rnd.id, m.Request.key == body.id)).first():
        raise DuplicateRequest(f"round {rnd.id} already has a request {body.id!r}; edit it or pick another id")
    row = m.Request(round_id=rnd.id, team_id=get_node(session, body.team).id, **request_fields(body))
    session.add(row)
    session.flush()
    data = body.model_dump(mode="json")
    session.add(m.RequestVersion(request_id=row.id, version=row.version, data=data, author=actor.name))
    audit(session, actor.name, "request.submit", "request", row.id, None, data)
    return row


# --- overrides ----------------------------------------------------------------------------------


def set_override(session: Session, actor: wf.Actor, rnd: m.Round, req: m.Request, total: int | None,
                 gpus: dict[str, int] | None, reason: str, source: str = "committee") -> m.Override:
    """Pin a request (a total spread over its pools, or GPUs per pool) and re-solve around it."""
    scenario = round_scenario(session, rnd)
    current = current_results(session, rnd).get(req.key)
    have = {k: int(v) for k, v in (current.gpus if current else {}).items()}
    others = [p for p in active_pins(session, rnd) if p.request != req.key]
    taken: dict[str, int] = {}
    for p in others:
        for pool, n in p.gpus.items():
            taken[pool] = taken.get(pool, 0) + n
    placed = dict(gpus) if gpus is not None else place(scenario, req.key, int(total or 0), have, taken)
    before = {"gpus": have}
    session.execute(update(m.Override).where(m.Override.round_id == rnd.id, m.Override.request_id == req.id,
                                             m.Override.active.is_(True)).values(active=False))
    row = m.Override(round_id=rnd.id, request_id=req.id, gpus=placed, reason=reason, author=actor.name, source=source)
    session.add(row)
    session.flush()
    solve(session, rnd, trigger=f"override of {req.key} by {actor.name}")
    audit(session, actor.name, "override.set", "request", req.key, before,
          {"gpus": placed, "reason": reason, "source": source, "round": rnd.id})
    return row


def clear_override(session: Session, actor: wf.Actor, rnd: m.Round, override: m.Override) -> None:
    override.active = False
    session.flush()
    solve(session, rnd, trigger=f"override {override.id} removed by {actor.name}")
    audit(session, actor.name, "override.clear", "override", override.id, {"gpus": override.gpus}, None)


# --- appeals ------------------------------------------------------------------------------------


def appeal_state(row: m.Appeal) -> wf.Appeal:
    return wf.Appeal(wf.AppealState(row.state), row.handler, row.deadline, row.escalations)


def _apply(row: m.Appeal, state: wf.Appeal) -> None:
    row.state, row.handler, row.deadline, row.escalations = state.state.value, state.handler, state.deadline, state.escalations


def appeal_json(row: m.Appeal) -> dict[str, Any]:
    return {"state": row.state, "handler": row.handler, "deadline": row.deadline.isoformat(),
            "escalations": row.escalations, "ruling_amount": row.ruling_amount}


def file_appeal(session: Session, actor: wf.Actor, rnd: m.Round, req: m.Request, asked: int, reason: str,
                now: dt.datetime) -> m.Appeal:
    tree = org_tree(session)
    wf.check_appeal(actor, tree, req.team.name)
    current = current_results(session, rnd).get(req.key)
    have = current.total if current else 0
    if asked <= have:
        raise ScenarioError([(("asked",), f"an appeal asks for more than the {have:g} GPUs request {req.key!r} "
                              f"has; asked is {asked}")])
    pending = session.scalars(select(m.Appeal.id).where(m.Appeal.request_id == req.id,
                                                        m.Appeal.state == wf.AppealState.open.value)).first()
    if pending is not None:
        raise wf.IllegalTransition(f"request {req.key!r} already has an open appeal ({pending}); wait for its "
                                   "ruling, then re-appeal it if need be")
    state = wf.file_appeal(tree, req.team.name, wf.RoundState(rnd.state), now, appeal_window_ends(rnd),
                           dt.timedelta(hours=rnd.appeal_response_hours))
    row = m.Appeal(round_id=rnd.id, request_id=req.id, team=req.team.name, author=actor.name, reason=reason,
                   asked=asked, current=have, state=state.state.value, handler=state.handler,
                   deadline=state.deadline, escalations=0)
    session.add(row)
    session.flush()
    audit(session, actor.name, "appeal.file", "appeal", row.id, None,
          {**appeal_json(row), "request": req.key, "asked": asked, "reason": reason})
    return row


def _published_round_of(session: Session, row: m.Appeal, what: str) -> m.Round:
    """The appeal's round, which must be published for `what` to happen."""
    rnd = get_round(session, row.round_id)
    if rnd.state != wf.RoundState.published.value:
        raise wf.IllegalTransition(f"{what} only on a published round; this one is {rnd.state}")
    return rnd


def rule_appeal(session: Session, actor: wf.Actor, row: m.Appeal, ruling: wf.Ruling, amount: int | None,
                reason: str, now: dt.datetime) -> m.Appeal:
    wf.check_rule(actor, org_tree(session), row.handler)
    rnd = _published_round_of(session, row, "rulings change an allocation")
    before = appeal_json(row)
    granted = row.asked if ruling is wf.Ruling.grant and amount is None else amount
    _apply(row, wf.rule_appeal(appeal_state(row), ruling, granted, row.asked, row.current))
    row.ruling_amount = granted if ruling is not wf.Ruling.reject else None
    row.ruling_reason, row.ruled_by, row.ruled_at = reason, actor.name, now
    session.flush()
    if ruling is not wf.Ruling.reject:
        req = session.get(m.Request, row.request_id)
        assert req is not None
        set_override(session, actor, rnd, req, granted, None, f"appeal {row.id} {ruling.value}: {reason}",
                     source=f"appeal:{row.id}")
    audit(session, actor.name, f"appeal.{ruling.value}", "appeal", row.id, before,
          {**appeal_json(row), "reason": reason})
    return row


def reappeal(session: Session, actor: wf.Actor, row: m.Appeal, reason: str, now: dt.datetime) -> m.Appeal:
    tree = org_tree(session)
    wf.check_appeal(actor, tree, row.team)
    rnd = _published_round_of(session, row, "appeals are accepted")
    before = appeal_json(row)
    _apply(row, wf.reappeal(appeal_state(row), tree, now, dt.timedelta(hours=rnd.appeal_response_hours)))
    row.reason = f"{row.reason}\n\nAppealed again: {reason}"
    session.flush()
    audit(session, actor.name, "appeal.reappeal", "appeal", row.id, before, {**appeal_json(row), "reason": reason})
    return row


def escalate_overdue(session: Session, actor: str, now: dt.datetime) -> list[m.Appeal]:
    """Move every open appeal past its deadline one committee up; returns those moved."""
    tree = org_tree(session)
    moved = []
    hours = dict(session.execute(select(m.Round.id, m.Round.appeal_response_hours)).all())
    for row in session.scalars(select(m.Appeal).where(m.Appeal.state == wf.AppealState.open.value,
                                                      m.Appeal.deadline <= now).with_for_update()):
        before = appeal_json(row)
        nxt = wf.escalate_overdue(appeal_state(row), tree, now, dt.timedelta(hours=hours[row.round_id]))
        if nxt is None:
            continue
        _apply(row, nxt)
        moved.append(row)
        audit(session, actor, "appeal.escalate", "appeal", row.id, before, appeal_json(row))
    session.flush()
    return moved

