"""Appeals: a team's lead appeals a published decision, committees rule, unanswered ones escalate."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.errors import UserError
from fairshare.scenario import ScenarioError
from fairshare.service.ops.overrides import pin, plan_pin
from fairshare.service.ops.previews import Preview
from fairshare.service.ops.rounds import (
    OnPublished,
    appeal_window_ends,
    current_results,
    get_round,
    request_in_round,
)
from fairshare.service.ops.unit import after_commit, use_case
from fairshare.store import models as m
from fairshare.store.repo import NotFound, audit, org_tree

Keyed = tuple[m.Appeal, str]
"""An appeal with the id of its request."""


def may_see(session: Session, actor: wf.Actor, row: m.Appeal) -> bool:
    """May `actor` read the appeal's reasons?"""
    return wf.may_see_appeal(actor, org_tree(session), row.team, row.handler)


def find_appeal(session: Session, appeal_id: int) -> Keyed:
    got = session.execute(
        select(m.Appeal, m.Request.key)
        .join(m.Request, m.Request.id == m.Appeal.request_id)
        .where(m.Appeal.id == appeal_id)
    ).first()
    if got is None:
        raise NotFound(f"no appeal with id {appeal_id}")
    return got[0], got[1]


def get_appeal(session: Session, actor: wf.Actor, appeal_id: int) -> Keyed:
    """One appeal, for those who may see it."""
    row, key = find_appeal(session, appeal_id)
    if not may_see(session, actor, row):
        raise wf.Forbidden(f"appeal {appeal_id} belongs to team {row.team!r} and its committees")
    return row, key


def list_appeals(
    session: Session,
    actor: wf.Actor,
    round_id: int | None,
    state: wf.AppealState | None,
    team: str | None,
    handler: str | None,
) -> list[Keyed]:
    """The appeals `actor` may see, by deadline; `handler`: only those now with committees in its subtree."""
    where = []
    if round_id is not None:
        where.append(m.Appeal.round_id == round_id)
    if state is not None:
        where.append(m.Appeal.state == state.value)
    if team is not None:
        where.append(m.Appeal.team == team)
    rows = session.execute(
        select(m.Appeal, m.Request.key)
        .join(m.Request, m.Request.id == m.Appeal.request_id)
        .where(*where)
        .order_by(m.Appeal.deadline, m.Appeal.id)
    ).all()
    tree = org_tree(session)
    return [
        (a, k)
        for a, k in rows
        if wf.may_see_appeal(actor, tree, a.team, a.handler)
        and (handler is None or (a.handler in tree.parents and tree.contains(handler, a.handler)))
    ]


def queue(session: Session, actor: wf.Actor, state: str) -> list[tuple[m.Appeal, str, list[str]]]:
    """A committee member's queue: the appeals (in `state`, or all) with the committees they sit on,
    by deadline, each with its handler's path to the root."""
    if not actor.is_committee:
        raise wf.Forbidden("the appeals queue is for committees; a team sees its appeals on its team page")
    where = [m.Appeal.state == state] if state in {s.value for s in wf.AppealState} else []
    rows = session.execute(
        select(m.Appeal, m.Request.key)
        .join(m.Request, m.Request.id == m.Appeal.request_id)
        .where(*where)
        .order_by(m.Appeal.deadline)
    ).all()
    tree = org_tree(session)
    return [
        (a, key, tree.path_to_root(a.handler)) for a, key in rows if actor.holds([wf.Role.committee], a.handler, tree)
    ]


def appeal_state(row: m.Appeal) -> wf.Appeal:
    return wf.Appeal(wf.AppealState(row.state), row.handler, row.deadline, row.escalations)


def _apply(row: m.Appeal, state: wf.Appeal) -> None:
    row.state, row.handler = state.state.value, state.handler
    row.deadline, row.escalations = state.deadline, state.escalations


def appeal_json(row: m.Appeal) -> dict[str, Any]:
    return {
        "state": row.state,
        "handler": row.handler,
        "deadline": row.deadline.isoformat(),
        "escalations": row.escalations,
        "ruling_amount": row.ruling_amount,
    }


@use_case
def file_appeal(
    session: Session, actor: wf.Actor, round_id: int, request_key: str, asked: int, reason: str, now: dt.datetime
) -> m.Appeal:
    """A lead's appeal of a published decision; it goes to the committee of the team's parent."""
    rnd = get_round(session, round_id)
    req = request_in_round(session, rnd, request_key)
    tree = org_tree(session)
    wf.check_appeal(actor, tree, req.team.name)
    current = current_results(session, rnd).get(req.key)
    have = current.total if current else 0
    if asked <= have:
        raise ScenarioError(
            [(("asked",), f"an appeal asks for more than the {have:g} GPUs request {req.key!r} has; asked is {asked}")]
        )
    pending = session.scalars(
        select(m.Appeal.id).where(m.Appeal.request_id == req.id, m.Appeal.state == wf.AppealState.open.value)
    ).first()
    if pending is not None:
        raise wf.IllegalTransition(
            f"request {req.key!r} already has an open appeal ({pending}); wait for its "
            "ruling, then re-appeal it if need be"
        )
    state = wf.file_appeal(
        tree,
        req.team.name,
        wf.RoundState(rnd.state),
        now,
        appeal_window_ends(rnd),
        dt.timedelta(hours=rnd.appeal_response_hours),
    )
    row = m.Appeal(
        round_id=rnd.id,
        request_id=req.id,
        team=req.team.name,
        author=actor.name,
        reason=reason,
        asked=asked,
        current=have,
        state=state.state.value,
        handler=state.handler,
        deadline=state.deadline,
        escalations=0,
    )
    session.add(row)
    session.flush()
    audit(
        session,
        actor.name,
        "appeal.file",
        "appeal",
        row.id,
        None,
        {**appeal_json(row), "request": req.key, "asked": asked, "reason": reason},
    )
    return row


def _published_round_of(session: Session, row: m.Appeal, what: str) -> m.Round:
    """The appeal's round, which must be published for `what` to happen."""
    rnd = get_round(session, row.round_id)
    if rnd.state != wf.RoundState.published.value:
        raise wf.IllegalTransition(f"{what} only on a published round; this one is {rnd.state}")
    return rnd


@use_case
def rule_appeal(
    session: Session,
    actor: wf.Actor,
    appeal_id: int,
    ruling: wf.Ruling,
    amount: int | None,
    reason: str,
    now: dt.datetime,
    on_published: OnPublished | None = None,
) -> Keyed:
    """The handling committee's ruling.  Unless it rejects, the request is pinned at the granted
    amount, absorbed by its own branch (refused if it cannot be inside the committee's subtree), and
    the published allocation re-solved, so `on_published` hears of it after the commit."""
    row, key = find_appeal(session, appeal_id)
    get_round(session, row.round_id, lock=True)  # rulings and steps of one round queue here
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
        pin(
            session,
            actor,
            rnd,
            req,
            granted,
            None,
            f"appeal {row.id} {ruling.value}: {reason}",
            source=f"appeal:{row.id}",
        )
        if on_published is not None:
            after_commit(session, lambda: on_published(rnd.id))
    audit(
        session, actor.name, f"appeal.{ruling.value}", "appeal", row.id, before, {**appeal_json(row), "reason": reason}
    )
    return row, key


def preview_ruling(
    session: Session, actor: wf.Actor, appeal_id: int, ruling: wf.Ruling, amount: int | None, reason: str
) -> Preview:
    """What `rule_appeal` would change (the granted pin absorbed by the request's branch), and why it
    would be refused; nothing is saved."""
    row, _ = find_appeal(session, appeal_id)
    wf.check_rule(actor, org_tree(session), row.handler)
    try:
        rnd = _published_round_of(session, row, "rulings change an allocation")
        granted = row.asked if ruling is wf.Ruling.grant and amount is None else amount
        wf.rule_appeal(appeal_state(row), ruling, granted, row.asked, row.current)
        if ruling is wf.Ruling.reject:
            return Preview([], None, None)
        req = session.get(m.Request, row.request_id)
        assert req is not None
        return plan_pin(session, actor, rnd, req, granted, None, f"appeal {row.id} {ruling.value}: {reason}").preview
    except (NotFound, wf.Forbidden):
        raise
    except UserError as e:
        return Preview([], str(e), None)


@use_case
def reappeal(session: Session, actor: wf.Actor, appeal_id: int, reason: str, now: dt.datetime) -> Keyed:
    """A lead takes a rejected or partial ruling to the next committee up."""
    row, key = find_appeal(session, appeal_id)
    tree = org_tree(session)
    wf.check_appeal(actor, tree, row.team)
    rnd = _published_round_of(session, row, "appeals are accepted")
    before = appeal_json(row)
    _apply(row, wf.reappeal(appeal_state(row), tree, now, dt.timedelta(hours=rnd.appeal_response_hours)))
    row.reason = f"{row.reason}\n\nAppealed again: {reason}"
    session.flush()
    audit(session, actor.name, "appeal.reappeal", "appeal", row.id, before, {**appeal_json(row), "reason": reason})
    return row, key


@use_case
def escalate_overdue(session: Session, actor: wf.Actor, now: dt.datetime) -> list[Keyed]:
    """Move every open appeal past its deadline one committee up (a committee or an admin, or cron);
    returns those moved."""
    if not actor.is_committee:
        raise wf.Forbidden(f"{actor.name} is neither on a committee nor an admin")
    tree = org_tree(session)
    moved = []
    hours = dict(session.execute(select(m.Round.id, m.Round.appeal_response_hours)).all())
    for row in session.scalars(
        select(m.Appeal).where(m.Appeal.state == wf.AppealState.open.value, m.Appeal.deadline <= now).with_for_update()
    ):
        before = appeal_json(row)
        nxt = wf.escalate_overdue(appeal_state(row), tree, now, dt.timedelta(hours=hours[row.round_id]))
        if nxt is None:
            continue
        _apply(row, nxt)
        moved.append(row)
        audit(session, actor.name, "appeal.escalate", "appeal", row.id, before, appeal_json(row))
    session.flush()
    keys = dict(
        session.execute(
            select(m.Request.id, m.Request.key).where(m.Request.id.in_([a.request_id for a in moved]))
        ).all()
    )
    return [(a, keys[a.request_id]) for a in moved]
