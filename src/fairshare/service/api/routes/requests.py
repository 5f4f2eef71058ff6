"""Requests: submitted and edited by their team while the round is open, every version kept."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fairshare import workflow as wf
from fairshare.scenario import Request
from fairshare.service.api.deps import Ctx, CtxDep, Id, PagingDep, RoundId
from fairshare.service.api.schemas import (
    CopiedOut,
    Page,
    RequestOut,
    RequestUpdate,
    RequestVersionOut,
    SkippedOut,
    VersionIn,
)
from fairshare.service.ops import requests as ops
from fairshare.store import models as m

router = APIRouter(tags=["requests"])


def request_out(ctx: Ctx, row: m.Request) -> RequestOut:
    visible = wf.may_see_justification(ctx.actor, ctx.tree, row.team.name)
    return RequestOut(
        id=row.id,
        round_id=row.round_id,
        key=row.key,
        team=row.team.name,
        gpus=row.gpus,
        min=row.min,
        priority=row.priority,
        launch=row.launch,
        weight=row.weight,
        speed=row.speed,
        sites=row.sites,
        justification=row.justification if visible else None,
        withdrawn=row.withdrawn,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.get(
    "/rounds/{round_id}/requests", summary="A round's requests (justifications only for their team and committee)"
)
def list_requests(
    round_id: RoundId,
    ctx: CtxDep,
    paging: PagingDep,
    team: Annotated[str | None, Query(max_length=200, description="only this team's")] = None,
    withdrawn: Annotated[bool, Query(description="include withdrawn requests")] = False,
) -> Page[RequestOut]:
    rows, total = ops.list_requests(ctx.session, round_id, team, withdrawn, paging.limit, paging.offset)
    return Page(items=[request_out(ctx, r) for r in rows], total=total, limit=paging.limit, offset=paging.offset)


@router.post("/rounds/{round_id}/requests", status_code=201, summary="Submit a request (the team's members and lead)")
def submit_request(round_id: RoundId, body: Request, ctx: CtxDep) -> RequestOut:
    return request_out(ctx, ops.submit_request(ctx.session, ctx.actor, round_id, body))


@router.post(
    "/rounds/{round_id}/requests/copy-forward",
    status_code=201,
    summary="Copy the previous round's requests into this open round (a team's, or the committee: everyone's)",
    description="Each live request of the previous round becomes a new request (version 1) here, which its team "
    "can then edit or withdraw.  With `team`: that team's (and its subtree's), by its members, lead or a "
    "committee above it; without: everyone's, by the round's committee.  Requests of archived teams, ids the "
    "round already has and requests that no longer fit the lab are skipped and listed with why.",
)
def copy_forward(
    round_id: RoundId,
    ctx: CtxDep,
    team: Annotated[str | None, Query(min_length=1, max_length=200, description="only this team's")] = None,
) -> CopiedOut:
    done = ops.copy_forward(ctx.session, ctx.actor, round_id, team)
    return CopiedOut(
        from_round=done.source.id,
        from_round_name=done.source.name,
        copied=[request_out(ctx, r) for r in done.copied],
        skipped=[SkippedOut(request=k, team=t, why=w) for k, t, w in done.skipped],
    )


@router.get("/requests/{request_id}", summary="One request")
def get_request(request_id: Id, ctx: CtxDep) -> RequestOut:
    return request_out(ctx, ops.get_request(ctx.session, request_id))


@router.put("/requests/{request_id}", summary="A new version of a request; send the version you read (stale: 409)")
def update_request(request_id: Id, body: RequestUpdate, ctx: CtxDep) -> RequestOut:
    new = Request.model_validate(body.model_dump(exclude={"version"}))
    return request_out(ctx, ops.update_request(ctx.session, ctx.actor, request_id, new, body.version, ctx.now))


@router.post("/requests/{request_id}/withdraw", summary="Withdraw a request while the round is open")
def withdraw_request(request_id: Id, body: VersionIn, ctx: CtxDep) -> RequestOut:
    return request_out(ctx, ops.withdraw_request(ctx.session, ctx.actor, request_id, body.version, ctx.now))


@router.get("/requests/{request_id}/versions", summary="Every version of a request, oldest first")
def request_versions(request_id: Id, ctx: CtxDep) -> list[RequestVersionOut]:
    row = ops.get_request(ctx.session, request_id)
    visible = wf.may_see_justification(ctx.actor, ctx.tree, row.team.name)
    out = []
    for v in ops.versions(ctx.session, row):
        data = dict(v.data) if visible else {k: x for k, x in v.data.items() if k != "justification"}
        out.append(RequestVersionOut(version=v.version, data=data, author=v.author, at=v.at))
    return out
