"""Requests: submitted, edited and withdrawn by their team while the round is open, every version kept."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.scenario import Request, ScenarioError, request_reference_errors
from fairshare.service.ops.rounds import get_round
from fairshare.service.ops.unit import use_case
from fairshare.store import models as m
from fairshare.store.repo import (
    NotFound,
    audit,
    get_node,
    live_node_names,
    org_tree,
    pool_models,
    request_fields,
    request_model,
    subtree_names,
)


class DuplicateRequest(wf.IllegalTransition):
    """The round already has a request with this id."""


def check_references(session: Session, req: Request) -> None:
    """The checks a scenario file gets, for one request: known team, GPU types and sites
    (a speed for a type no pool has would leave the request able to run nowhere)."""
    pools = pool_models(session)
    live = live_node_names(session)
    if req.team not in live and req.team in org_tree(session).parents:
        raise ScenarioError([(("team",), f"team {req.team!r} is archived; it takes no part in new rounds")])
    errors = request_reference_errors(req, live, {p.gpu for p in pools}, {p.site for p in pools})
    if errors:
        raise ScenarioError(errors)


def get_request(session: Session, request_id: int) -> m.Request:
    row = session.get(m.Request, request_id)
    if row is None:
        raise NotFound(f"no request with id {request_id}")
    return row


def list_requests(
    session: Session, round_id: int, team: str | None, withdrawn: bool, limit: int, offset: int
) -> tuple[list[m.Request], int]:
    """A page of the round's requests (live ones unless `withdrawn`), and how many there are."""
    get_round(session, round_id)
    where = [m.Request.round_id == round_id]
    if team is not None:
        where.append(m.Request.team_id == get_node(session, team).id)
    if not withdrawn:
        where.append(m.Request.withdrawn.is_(False))
    total = session.scalar(select(func.count()).select_from(m.Request).where(*where)) or 0
    rows = session.scalars(select(m.Request).where(*where).order_by(m.Request.id).limit(limit).offset(offset))
    return list(rows), total


def versions(session: Session, row: m.Request) -> list[m.RequestVersion]:
    """Every version of a request, oldest first."""
    return list(
        session.scalars(
            select(m.RequestVersion).where(m.RequestVersion.request_id == row.id).order_by(m.RequestVersion.version)
        )
    )


@use_case
def submit_request(session: Session, actor: wf.Actor, round_id: int, body: Request) -> m.Request:
    """A new request from its team while the round is open; version 1 is kept."""
    rnd = get_round(session, round_id)
    check_references(session, body)
    wf.check_edit_request(actor, org_tree(session), body.team)
    wf.check_requests_editable(wf.RoundState(rnd.state))
    if session.scalars(select(m.Request.id).where(m.Request.round_id == rnd.id, m.Request.key == body.id)).first():
        raise DuplicateRequest(f"round {rnd.id} already has a request {body.id!r}; edit it or pick another id")
    return _add(session, actor, rnd, body, "request.submit")


def _add(session: Session, actor: wf.Actor, rnd: m.Round, body: Request, action: str) -> m.Request:
    """The row, its version 1 and its audit entry (the caller has checked who and when)."""
    row = m.Request(round_id=rnd.id, team_id=get_node(session, body.team).id, **request_fields(body))
    session.add(row)
    session.flush()
    data = body.model_dump(mode="json")
    session.add(m.RequestVersion(request_id=row.id, version=row.version, data=data, author=actor.name))
    audit(session, actor.name, action, "request", row.id, None, data)
    return row


@use_case
def update_request(
    session: Session, actor: wf.Actor, request_id: int, new: Request, version: int, now: dt.datetime
) -> m.Request:
    """A new version of the request, from the version the editor read (another one: a conflict)."""
    row = get_request(session, request_id)
    rnd = get_round(session, row.round_id)
    if new.id != row.key:
        raise ScenarioError([(("id",), f"the id of request {request_id} is {row.key!r}; it cannot be renamed")])
    check_references(session, new)
    tree = org_tree(session)
    wf.check_edit_request(actor, tree, row.team.name)
    wf.check_edit_request(actor, tree, new.team)
    wf.check_requests_editable(wf.RoundState(rnd.state))
    if row.withdrawn:
        raise wf.IllegalTransition(f"request {request_id} was withdrawn; submit a new one")
    if version != row.version:
        raise wf.IllegalTransition(
            f"request {request_id} is at version {row.version}, not {version}: someone "
            "changed it since you read it; re-read it and retry"
        )
    before = _latest_data(session, row)
    team = get_node(session, new.team)
    for k, v in request_fields(new).items():
        setattr(row, k, v)
    row.team = team  # the relationship, not team_id: callers read row.team
    row.updated_at = now
    session.flush()  # UPDATE ... WHERE version = read version: a concurrent writer gets StaleDataError
    data = new.model_dump(mode="json")
    session.add(m.RequestVersion(request_id=row.id, version=row.version, data=data, author=actor.name))
    audit(session, actor.name, "request.update", "request", row.id, before, data)
    return row


@use_case
def withdraw_request(session: Session, actor: wf.Actor, request_id: int, version: int, now: dt.datetime) -> m.Request:
    """Withdraw a request while the round is open; it is then gone for every purpose."""
    row = get_request(session, request_id)
    rnd = get_round(session, row.round_id)
    wf.check_edit_request(actor, org_tree(session), row.team.name)
    wf.check_requests_editable(wf.RoundState(rnd.state))
    if version != row.version:
        raise wf.IllegalTransition(f"request {request_id} is at version {row.version}, not {version}; re-read it")
    row.withdrawn = True
    row.updated_at = now
    session.flush()
    audit(session, actor.name, "request.withdraw", "request", row.id, {"withdrawn": False}, {"withdrawn": True})
    return row


def _latest_data(session: Session, row: m.Request) -> dict[str, Any]:
    latest = session.scalars(
        select(m.RequestVersion).where(m.RequestVersion.request_id == row.id).order_by(m.RequestVersion.version.desc())
    ).first()
    return latest.data if latest else {}


@dataclass(frozen=True)
class Copied:
    """What a copy forward did: the new requests, and the ones of the previous round left behind, with why."""

    source: m.Round  # the previous round
    copied: list[m.Request]
    skipped: list[tuple[str, str, str]]  # (request key, team, why)


def previous_round(session: Session, rnd: m.Round) -> m.Round:
    """The round created just before `rnd` (rounds are numbered in the order they were created)."""
    prev = session.scalars(select(m.Round).where(m.Round.id < rnd.id).order_by(m.Round.id.desc())).first()
    if prev is None:
        raise wf.IllegalTransition(f"round {rnd.name!r} has no previous round to copy requests from")
    return prev


@use_case
def copy_forward(session: Session, actor: wf.Actor, round_id: int, team: str | None) -> Copied:
    """Copy the previous round's live requests (of `team` and its subtree, or of everyone) into this open
    round, each as a new request at version 1 that its team can then edit or withdraw.  Requests of archived
    teams, requests whose id the round already has, and requests that no longer fit the lab (a GPU type or
    site with no pool) are left behind and named.  Its team's members and lead, or a committee above it, may
    copy a team's requests; only the round's committee may copy everyone's."""
    rnd = get_round(session, round_id)
    tree = org_tree(session)
    if team is None:
        wf.check_run_round(actor, tree, rnd.node.name)
        teams = None
    else:
        node = get_node(session, team)
        try:
            wf.check_edit_request(actor, tree, node.name)
        except wf.Forbidden:
            try:
                wf.check_override(actor, tree, node.name)  # a committee above it
            except wf.Forbidden:
                raise wf.Forbidden(
                    f"{actor.name} is not a member or lead of team {node.name!r} nor on a committee above it; "
                    "only they may copy its requests forward"
                ) from None
        teams = set(subtree_names(session, node.name))
    wf.check_requests_editable(wf.RoundState(rnd.state))
    source = previous_round(session, rnd)
    taken = set(session.scalars(select(m.Request.key).where(m.Request.round_id == rnd.id)))
    old = session.scalars(
        select(m.Request).where(m.Request.round_id == source.id, m.Request.withdrawn.is_(False)).order_by(m.Request.id)
    )
    copied: list[m.Request] = []
    skipped: list[tuple[str, str, str]] = []
    for row in old:
        if teams is not None and row.team.name not in teams:
            continue
        if row.team.archived_at is not None:
            skipped.append((row.key, row.team.name, f"team {row.team.name!r} is archived"))
            continue
        if row.key in taken:
            skipped.append((row.key, row.team.name, f"round {rnd.name!r} already has a request {row.key!r}"))
            continue
        body = request_model(row)
        try:
            check_references(session, body)
        except ScenarioError as e:
            skipped.append((row.key, row.team.name, f"no longer fits the lab: {e}"))
            continue
        copied.append(_add(session, actor, rnd, body, "request.copy_forward"))
    audit(
        session,
        actor.name,
        "round.copy_forward",
        "round",
        rnd.id,
        None,
        {
            "from_round": source.id,
            "team": team,
            "copied": [r.key for r in copied],
            "skipped": [{"request": k, "team": t, "why": w} for k, t, w in skipped],
        },
    )
    return Copied(source, copied, skipped)
