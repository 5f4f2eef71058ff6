"""Requests: submitted and edited by their team while the round is open, every version kept."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from fairshare import workflow as wf
from fairshare.scenario import Request, ScenarioError
from fairshare.service.ops import rounds as ops
from fairshare.service.api.deps import Ctx, CtxDep, Id, PagingDep, RoundId
from fairshare.service.api.schemas import Page, RequestOut, RequestUpdate, RequestVersionOut, VersionIn
from fairshare.store import models as m
from fairshare.store.repo import NotFound, audit, get_node, request_fields

router = APIRouter(tags=["requests"])


def request_out(ctx: Ctx, row: m.Request) -> RequestOut:
    visible = wf.may_see_justification(ctx.actor, ctx.tree, row.team.name)
    return RequestOut(id=row.id, round_id=row.round_id, key=row.key, team=row.team.name, gpus=row.gpus, min=row.min,
                      priority=row.priority, launch=row.launch, weight=row.weight, speed=row.speed, sites=row.sites,
                      justification=row.justification if visible else None, withdrawn=row.withdrawn,
                      version=row.version, created_at=row.created_at, updated_at=row.updated_at)


def _get(ctx: Ctx, request_id: int) -> m.Request:
    row = ctx.session.get(m.Request, request_id)
    if row is None:
        raise NotFound(f"no request with id {request_id}")
    return row


@router.get("/rounds/{round_id}/requests", summary="A round's requests (justifications only for their team and committee)")
def list_requests(round_id: RoundId, ctx: CtxDep, paging: PagingDep,
                  team: Annotated[str | None, Query(max_length=200, description="only this team's")] = None,
                  withdrawn: Annotated[bool, Query(description="include withdrawn requests")] = False,
                  ) -> Page[RequestOut]:
    ops.get_round(ctx.session, round_id)
    where = [m.Request.round_id == round_id]
    if team is not None:
        where.append(m.Request.team_id == get_node(ctx.session, team).id)
    if not withdrawn:
        where.append(m.Request.withdrawn.is_(False))
    total = ctx.session.scalar(select(func.count()).select_from(m.Request).where(*where)) or 0
    rows = ctx.session.scalars(select(m.Request).where(*where).order_by(m.Request.id)
                               .limit(paging.limit).offset(paging.offset))
    return Page(items=[request_out(ctx, r) for r in rows], total=total, limit=paging.limit, offset=paging.offset)


@router.post("/rounds/{round_id}/requests", status_code=201, summary="Submit a request (the team's members and lead)")
def submit_request(round_id: RoundId, body: Request, ctx: CtxDep) -> RequestOut:
    rnd = ops.get_round(ctx.session, round_id)
    row = ops.submit_request(ctx.session, ctx.actor, rnd, body)
    ctx.session.commit()
    return request_out(ctx, row)


@router.get("/requests/{request_id}", summary="One request")
def get_request(request_id: Id, ctx: CtxDep) -> RequestOut:
    return request_out(ctx, _get(ctx, request_id))


@router.put("/requests/{request_id}", summary="A new version of a request; send the version you read (stale: 409)")
def update_request(request_id: Id, body: RequestUpdate, ctx: CtxDep) -> RequestOut:
    row = _get(ctx, request_id)
    rnd = ops.get_round(ctx.session, row.round_id)
    if body.id != row.key:
        raise ScenarioError([(("id",), f"the id of request {request_id} is {row.key!r}; it cannot be renamed")])
    new = Request.model_validate(body.model_dump(exclude={"version"}))
    ops.check_references(ctx.session, new)
    wf.check_edit_request(ctx.actor, ctx.tree, row.team.name)
    wf.check_edit_request(ctx.actor, ctx.tree, new.team)
    wf.check_requests_editable(wf.RoundState(rnd.state))
    if row.withdrawn:
        raise wf.IllegalTransition(f"request {request_id} was withdrawn; submit a new one")
    if body.version != row.version:
        raise wf.IllegalTransition(f"request {request_id} is at version {row.version}, not {body.version}: someone "
                                   "changed it since you read it; re-read it and retry")
    before = _version_data(ctx, row)
    team = get_node(ctx.session, new.team)
    for k, v in request_fields(new).items():
        setattr(row, k, v)
    row.team = team  # the relationship, not team_id: the answer below reads row.team
    row.updated_at = ctx.now
    ctx.session.flush()  # UPDATE ... WHERE version = read version: a concurrent writer gets StaleDataError
    data = new.model_dump(mode="json")
    ctx.session.add(m.RequestVersion(request_id=row.id, version=row.version, data=data, author=ctx.actor.name))
    audit(ctx.session, ctx.actor.name, "request.update", "request", row.id, before, data)
    ctx.session.commit()
    return request_out(ctx, row)


@router.post("/requests/{request_id}/withdraw", summary="Withdraw a request while the round is open")
def withdraw_request(request_id: Id, body: VersionIn, ctx: CtxDep) -> RequestOut:
    row = _get(ctx, request_id)
    rnd = ops.get_round(ctx.session, row.round_id)
    wf.check_edit_request(ctx.actor, ctx.tree, row.team.name)
    wf.check_requests_editable(wf.RoundState(rnd.state))
    if body.version != row.version:
        raise wf.IllegalTransition(f"request {request_id} is at version {row.version}, not {body.version}; re-read it")
    row.withdrawn = True
    row.updated_at = ctx.now
    ctx.session.flush()
    audit(ctx.session, ctx.actor.name, "request.withdraw", "request", row.id, {"withdrawn": False}, {"withdrawn": True})
    ctx.session.commit()
    return request_out(ctx, row)


def _version_data(ctx: Ctx, row: m.Request) -> dict[str, object]:
    latest = ctx.session.scalars(select(m.RequestVersion).where(m.RequestVersion.request_id == row.id)
                                 .order_by(m.RequestVersion.version.desc())).first()
    return latest.data if latest else {}


@router.get("/requests/{request_id}/versions", summary="Every version of a request, oldest first")
def request_versions(request_id: Id, ctx: CtxDep) -> list[RequestVersionOut]:
    row = _get(ctx, request_id)
    visible = wf.may_see_justification(ctx.actor, ctx.tree, row.team.name)
    out = []
    for v in ctx.session.scalars(select(m.RequestVersion).where(m.RequestVersion.request_id == row.id)
                                 .order_by(m.RequestVersion.version)):
        data = dict(v.data) if visible else {k: x for k, x in v.data.items() if k != "justification"}
        out.append(RequestVersionOut(version=v.version, data=data, author=v.author, at=v.at))
    return out
