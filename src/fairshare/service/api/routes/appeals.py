"""Appeals: a lead appeals a published decision; committees rule; unanswered ones escalate."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request

from fairshare import workflow as wf
from fairshare.service.api.deps import Ctx, CtxDep, Id, PagingDep, RoundId
from fairshare.service.api.push import push_later
from fairshare.service.api.routes.rounds import DryRun, preview_out
from fairshare.service.api.schemas import AppealIn, AppealOut, Page, PreviewOut, ReappealIn, RulingIn
from fairshare.service.ops import appeals as ops
from fairshare.store import models as m

router = APIRouter(tags=["appeals"])


def appeal_out(ctx: Ctx, row: m.Appeal, key: str) -> AppealOut:
    visible = wf.may_see_appeal(ctx.actor, ctx.tree, row.team, row.handler)
    return AppealOut(
        id=row.id,
        round_id=row.round_id,
        request=key,
        team=row.team,
        author=row.author,
        reason=row.reason if visible else None,
        asked=row.asked,
        current=row.current,
        state=row.state,
        handler=row.handler,
        deadline=row.deadline,
        overdue=row.state == wf.AppealState.open.value and ctx.now >= row.deadline,
        escalations=row.escalations,
        ruling_amount=row.ruling_amount,
        ruling_reason=row.ruling_reason if visible else None,
        ruled_by=row.ruled_by,
        ruled_at=row.ruled_at,
        created_at=row.created_at,
        version=row.version,
    )


@router.post(
    "/rounds/{round_id}/appeals",
    status_code=201,
    summary="Appeal a published decision (the team's lead); it goes to the committee of the team's parent",
)
def file_appeal(round_id: RoundId, body: AppealIn, ctx: CtxDep) -> AppealOut:
    row = ops.file_appeal(ctx.session, ctx.actor, round_id, body.request, body.asked, body.reason, ctx.now)
    return appeal_out(ctx, row, body.request)


@router.get("/appeals", summary="Appeals you may see; filter by round, state, team or the committee that has them")
def list_appeals(
    ctx: CtxDep,
    paging: PagingDep,
    round_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    state: Annotated[wf.AppealState | None, Query()] = None,
    team: Annotated[str | None, Query(max_length=200)] = None,
    handler: Annotated[
        str | None, Query(max_length=200, description="appeals now with committees in this subtree")
    ] = None,
) -> Page[AppealOut]:
    mine = ops.list_appeals(ctx.session, ctx.actor, round_id, state, team, handler)
    page = mine[paging.offset : paging.offset + paging.limit]
    return Page(
        items=[appeal_out(ctx, a, k) for a, k in page], total=len(mine), limit=paging.limit, offset=paging.offset
    )


@router.get("/appeals/{appeal_id}", summary="One appeal")
def get_appeal(appeal_id: Id, ctx: CtxDep) -> AppealOut:
    row, key = ops.get_appeal(ctx.session, ctx.actor, appeal_id)
    return appeal_out(ctx, row, key)


@router.post(
    "/appeals/{appeal_id}/ruling",
    summary="Rule on an appeal (the committee that has it): grant, partial or reject, with a reason",
    description="A grant is absorbed by the request's own branch first; one that cannot be absorbed inside the "
    "committee's subtree is refused (409).  With `dry_run=true`: what it would change; nothing saved.",
)
def rule(
    appeal_id: Id, body: RulingIn, ctx: CtxDep, request: Request, background: BackgroundTasks, dry_run: DryRun = False
) -> AppealOut | PreviewOut:
    if dry_run:
        return preview_out(ops.preview_ruling(ctx.session, ctx.actor, appeal_id, body.ruling, body.amount, body.reason))
    row, key = ops.rule_appeal(
        ctx.session,
        ctx.actor,
        appeal_id,
        body.ruling,
        body.amount,
        body.reason,
        ctx.now,
        on_published=push_later(request, background, ctx.actor.name),
    )
    return appeal_out(ctx, row, key)


@router.post(
    "/appeals/{appeal_id}/reappeal",
    summary="Appeal a rejected or partial ruling to the next committee up (the team's lead)",
)
def reappeal(appeal_id: Id, body: ReappealIn, ctx: CtxDep) -> AppealOut:
    row, key = ops.reappeal(ctx.session, ctx.actor, appeal_id, body.reason, ctx.now)
    return appeal_out(ctx, row, key)


@router.post(
    "/appeals/escalate",
    summary="Move every overdue open appeal one committee up (committee or admin; "
    "run it from cron or `fairshare appeal escalate`)",
)
def escalate(ctx: CtxDep) -> list[AppealOut]:
    return [appeal_out(ctx, a, key) for a, key in ops.escalate_overdue(ctx.session, ctx.actor, ctx.now)]
