"""Appeals: a lead appeals a published decision; committees rule; unanswered ones escalate."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request
from sqlalchemy import select

from fairshare import workflow as wf
from fairshare.service.ops import actions
from fairshare.service.ops import rounds as ops
from fairshare.service.api.deps import Ctx, CtxDep, Id, PagingDep, RoundId
from fairshare.service.api.schemas import AppealIn, AppealOut, Page, ReappealIn, RulingIn
from fairshare.store import models as m
from fairshare.store.repo import NotFound

router = APIRouter(tags=["appeals"])


def _may_see(ctx: Ctx, row: m.Appeal) -> bool:
    """The appealing team, the committees over the team or the current handler, admins."""
    return (ctx.actor.holds([wf.Role.member, wf.Role.lead, wf.Role.committee], row.team, ctx.tree)
            or ctx.actor.holds([wf.Role.committee], row.handler, ctx.tree))


def appeal_out(ctx: Ctx, row: m.Appeal, key: str) -> AppealOut:
    visible = _may_see(ctx, row)
    return AppealOut(id=row.id, round_id=row.round_id, request=key, team=row.team, author=row.author,
                     reason=row.reason if visible else None, asked=row.asked, current=row.current, state=row.state,
                     handler=row.handler, deadline=row.deadline,
                     overdue=row.state == wf.AppealState.open.value and ctx.now >= row.deadline,
                     escalations=row.escalations, ruling_amount=row.ruling_amount,
                     ruling_reason=row.ruling_reason if visible else None, ruled_by=row.ruled_by,
                     ruled_at=row.ruled_at, created_at=row.created_at, version=row.version)


def _get(ctx: Ctx, appeal_id: int) -> tuple[m.Appeal, str]:
    got = ctx.session.execute(select(m.Appeal, m.Request.key).join(m.Request, m.Request.id == m.Appeal.request_id)
                              .where(m.Appeal.id == appeal_id)).first()
    if got is None:
        raise NotFound(f"no appeal with id {appeal_id}")
    return got[0], got[1]


@router.post("/rounds/{round_id}/appeals", status_code=201,
             summary="Appeal a published decision (the team's lead); it goes to the committee of the team's parent")
def file_appeal(round_id: RoundId, body: AppealIn, ctx: CtxDep) -> AppealOut:
    rnd = ops.get_round(ctx.session, round_id)
    req = ops.request_in_round(ctx.session, rnd, body.request)
    row = ops.file_appeal(ctx.session, ctx.actor, rnd, req, body.asked, body.reason, ctx.now)
    ctx.session.commit()
    return appeal_out(ctx, row, req.key)


@router.get("/appeals", summary="Appeals you may see; filter by round, state, team or the committee that has them")
def list_appeals(ctx: CtxDep, paging: PagingDep,
                 round_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
                 state: Annotated[wf.AppealState | None, Query()] = None,
                 team: Annotated[str | None, Query(max_length=200)] = None,
                 handler: Annotated[str | None, Query(max_length=200, description="appeals now with committees in this subtree")] = None,
                 ) -> Page[AppealOut]:
    where = []
    if round_id is not None:
        where.append(m.Appeal.round_id == round_id)
    if state is not None:
        where.append(m.Appeal.state == state.value)
    if team is not None:
        where.append(m.Appeal.team == team)
    rows = ctx.session.execute(select(m.Appeal, m.Request.key).join(m.Request, m.Request.id == m.Appeal.request_id)
                               .where(*where).order_by(m.Appeal.deadline, m.Appeal.id)).all()
    mine = [(a, k) for a, k in rows if _may_see(ctx, a)
            and (handler is None or (a.handler in ctx.tree.parents and ctx.tree.contains(handler, a.handler)))]
    page = mine[paging.offset:paging.offset + paging.limit]
    return Page(items=[appeal_out(ctx, a, k) for a, k in page], total=len(mine), limit=paging.limit,
                offset=paging.offset)


@router.get("/appeals/{appeal_id}", summary="One appeal")
def get_appeal(appeal_id: Id, ctx: CtxDep) -> AppealOut:
    row, key = _get(ctx, appeal_id)
    if not _may_see(ctx, row):
        raise wf.Forbidden(f"appeal {appeal_id} belongs to team {row.team!r} and its committees")
    return appeal_out(ctx, row, key)


@router.post("/appeals/{appeal_id}/ruling",
             summary="Rule on an appeal (the committee that has it): grant, partial or reject, with a reason")
def rule(appeal_id: Id, body: RulingIn, ctx: CtxDep, request: Request, background: BackgroundTasks) -> AppealOut:
    row, key = _get(ctx, appeal_id)
    actions.rule_appeal(ctx, request.app, background, row, body.ruling, body.amount, body.reason)
    return appeal_out(ctx, row, key)


@router.post("/appeals/{appeal_id}/reappeal",
             summary="Appeal a rejected or partial ruling to the next committee up (the team's lead)")
def reappeal(appeal_id: Id, body: ReappealIn, ctx: CtxDep) -> AppealOut:
    row, key = _get(ctx, appeal_id)
    ops.reappeal(ctx.session, ctx.actor, row, body.reason, ctx.now)
    ctx.session.commit()
    return appeal_out(ctx, row, key)


@router.post("/appeals/escalate", summary="Move every overdue open appeal one committee up (committee or admin; "
             "run it from cron or `fairshare appeal escalate`)")
def escalate(ctx: CtxDep) -> list[AppealOut]:
    if not ctx.actor.is_committee:
        raise wf.Forbidden(f"{ctx.actor.name} is neither on a committee nor an admin")
    moved = ops.escalate_overdue(ctx.session, ctx.actor.name, ctx.now)
    ctx.session.commit()
    keys = dict(ctx.session.execute(select(m.Request.id, m.Request.key).where(
        m.Request.id.in_([a.request_id for a in moved]))).all())
    return [appeal_out(ctx, a, keys[a.request_id]) for a in moved]
