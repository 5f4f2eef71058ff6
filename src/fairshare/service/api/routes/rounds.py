"""Rounds: create, step through the workflow, read the proposal and entitlements, override."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response
from sqlalchemy import func, select

from fairshare import workflow as wf
from fairshare.scenario import Policy
from fairshare.service.ops import actions
from fairshare.service.ops import rounds as ops
from fairshare.service.api.deps import ActorDep, Ctx, CtxDep, Id, PagingDep, RoundId
from fairshare.service.api.entitlement_cache import EntitlementCache
from fairshare.service.api.schemas import (
    AllocationOut, EntitlementOut, OverrideIn, OverrideOut, Page, RoundIn, RoundOut, RunOut,
)
from fairshare.store import models as m
from fairshare.store.repo import NotFound, audit, lab, root_node

router = APIRouter(tags=["rounds"])


class Step(str, Enum):
    open = "open"
    close = "close"
    reopen = "reopen"
    propose = "propose"
    publish = "publish"
    finalize = "finalize"


def round_out(rnd: m.Round) -> RoundOut:
    return RoundOut(id=rnd.id, name=rnd.name, state=rnd.state, node=rnd.node.name, policy=rnd.policy,
                    appeal_window_hours=rnd.appeal_window_hours, appeal_response_hours=rnd.appeal_response_hours,
                    published_at=rnd.published_at, appeal_window_ends=ops.appeal_window_ends(rnd),
                    created_at=rnd.created_at, current_run_id=rnd.current_run_id, version=rnd.version,
                    next_steps=wf.next_steps(wf.RoundState(rnd.state)))


@router.get("/rounds", summary="Rounds, newest first")
def list_rounds(ctx: CtxDep, paging: PagingDep,
                state: Annotated[wf.RoundState | None, Query(description="only rounds in this state")] = None,
                ) -> Page[RoundOut]:
    where = [m.Round.state == state.value] if state else []
    total = ctx.session.scalar(select(func.count()).select_from(m.Round).where(*where)) or 0
    rows = ctx.session.scalars(select(m.Round).where(*where).order_by(m.Round.id.desc())
                               .limit(paging.limit).offset(paging.offset))
    return Page(items=[round_out(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset)


@router.post("/rounds", status_code=201, summary="Create a round (draft) run by the root's committee")
def create_round(body: RoundIn, ctx: CtxDep) -> RoundOut:
    root = root_node(ctx.session)
    wf.check_run_round(ctx.actor, ctx.tree, root.name)
    taken = ctx.session.scalars(select(m.Round.id).where(m.Round.name == body.name)).first()
    if taken is not None:
        raise wf.IllegalTransition(f"round {body.name!r} exists (id {taken}); choose another name")
    policy = body.policy or Policy.model_validate(lab(ctx.session).policy or {})
    rnd = m.Round(name=body.name, node_id=root.id, policy=policy.model_dump(mode="json"),
                  appeal_window_hours=body.appeal_window_hours, appeal_response_hours=body.appeal_response_hours)
    ctx.session.add(rnd)
    ctx.session.flush()
    audit(ctx.session, ctx.actor.name, "round.create", "round", rnd.id, None, body.model_dump(mode="json"))
    ctx.session.commit()
    ctx.session.refresh(rnd)
    return round_out(rnd)


@router.get("/rounds/{round_id}", summary="One round, with the steps legal now")
def get_round(round_id: RoundId, ctx: CtxDep) -> RoundOut:
    return round_out(ops.get_round(ctx.session, round_id))


STEP_HELP = {
    "open": "Accept requests (draft -> open).",
    "close": "Freeze the requests (open -> closed).",
    "reopen": "Accept requests again (closed or proposed -> open).",
    "propose": "Run the engine, honouring overrides; again to re-run (closed or proposed -> proposed).",
    "publish": "Show the allocation to everyone and open the appeal window (proposed -> published).",
    "finalize": "Close the round once the appeal window has ended and no appeal is pending (published -> final).",
}


def _step_endpoint(step: Step) -> Any:
    def endpoint(round_id: RoundId, ctx: CtxDep, request: Request, background: BackgroundTasks) -> RoundOut:
        return round_out(actions.step_round(ctx, request.app, background, round_id, step.value))

    endpoint.__name__ = f"{step.value}_round"
    return endpoint


for _step in Step:
    router.add_api_route(f"/rounds/{{round_id}}/{_step.value}", _step_endpoint(_step), methods=["POST"],
                         summary=f"{_step.value.capitalize()} the round (its committee)",
                         description=STEP_HELP[_step.value], response_model=RoundOut)


def _visible_round(ctx: Ctx, round_id: int) -> m.Round:
    rnd = ops.get_round(ctx.session, round_id)
    _check_visible(ctx.actor, round_id, rnd.state, rnd.current_run_id)
    return rnd


def _check_visible(actor: wf.Actor, round_id: int, state: str, current_run_id: int | None) -> None:
    if current_run_id is None:
        raise NotFound(f"round {round_id} has no proposal yet; the committee proposes it after closing")
    if not wf.allocation_visible(wf.RoundState(state), actor):
        raise wf.Forbidden(f"round {round_id} is {state}; its proposal is visible to the committee only "
                           "until it is published")


@router.get("/rounds/{round_id}/runs", summary="Every engine run of the round, newest first")
def list_runs(round_id: RoundId, ctx: CtxDep) -> list[RunOut]:
    _visible_round(ctx, round_id)
    rows = ctx.session.scalars(select(m.Run).where(m.Run.round_id == round_id).order_by(m.Run.id.desc()))
    return [RunOut.model_validate(r, from_attributes=True) for r in rows]


@router.get("/rounds/{round_id}/allocation", summary="GPUs per request and pool, each with its reason")
def allocation(round_id: RoundId, ctx: CtxDep, paging: PagingDep,
               team: Annotated[str | None, Query(max_length=200, description="only this team's requests")] = None,
               ) -> Page[AllocationOut]:
    rnd = _visible_round(ctx, round_id)
    where = [m.RequestResult.run_id == rnd.current_run_id] + ([m.RequestResult.team == team] if team else [])
    total = ctx.session.scalar(select(func.count()).select_from(m.RequestResult).where(*where)) or 0
    rows = ctx.session.scalars(select(m.RequestResult).where(*where).order_by(m.RequestResult.id)
                               .limit(paging.limit).offset(paging.offset))
    items = [AllocationOut(request=r.key, team=r.team, demand=r.demand, total=r.total, gpus=r.gpus,
                           effective=r.effective, weight=r.weight, reason_code=r.reason_code, reason=r.reason,
                           level=r.level) for r in rows]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


def _entitlement(rnd: m.Round, row: m.NodeResult) -> EntitlementOut:
    return EntitlementOut(round_id=rnd.id, round_state=rnd.state, run_id=row.run_id, **row.data)


@router.get("/rounds/{round_id}/entitlements", summary="What every node gets, and why")
def list_entitlements(round_id: RoundId, ctx: CtxDep, paging: PagingDep,
                      parent: Annotated[str | None, Query(max_length=200, description="only this node's children")] = None,
                      ) -> Page[EntitlementOut]:
    rnd = _visible_round(ctx, round_id)
    rows = list(ctx.session.scalars(select(m.NodeResult).where(m.NodeResult.run_id == rnd.current_run_id)
                                    .order_by(m.NodeResult.id)))
    if parent is not None:
        rows = [r for r in rows if r.data.get("parent") == parent]
    page = rows[paging.offset:paging.offset + paging.limit]
    return Page(items=[_entitlement(rnd, r) for r in page], total=len(rows), limit=paging.limit, offset=paging.offset)


@router.get("/rounds/{round_id}/entitlements/{node}", response_model=EntitlementOut,
            summary="What a team (or any node) gets per pool, its demand, its fair share, and why")
async def get_entitlement(round_id: RoundId, node: str, actor: ActorDep, request: Request) -> Response:
    # the most read endpoint: async, one shared read of the round's (state, run) per database round
    # trip, and the answer kept as bytes per (round, state, run, node); see entitlement_cache.
    # Once kept, fast_entitlements serves it before routing.  The checks, their order and their
    # messages are _visible_round's.
    cache: EntitlementCache = request.app.state.entitlement_cache
    stamp = await cache.stamp(round_id)
    if stamp is None:
        raise NotFound(f"no round with id {round_id}")
    state, run_id = stamp
    _check_visible(actor, round_id, state, run_id)
    assert run_id is not None
    body = await cache.answer(round_id, state, run_id, node)
    if body is None:
        raise NotFound(f"no org node named {node!r} in round {round_id}")
    return Response(body, media_type="application/json")


def override_out(o: m.Override, key: str) -> OverrideOut:
    return OverrideOut(id=o.id, request=key, gpus=o.gpus, reason=o.reason, author=o.author, source=o.source,
                       active=o.active, at=o.at)


@router.get("/rounds/{round_id}/overrides", summary="Manual overrides of the round, active and past")
def list_overrides(round_id: RoundId, ctx: CtxDep) -> list[OverrideOut]:
    _visible_round(ctx, round_id)
    rows = ctx.session.execute(select(m.Override, m.Request.key).join(m.Request, m.Request.id == m.Override.request_id)
                               .where(m.Override.round_id == round_id).order_by(m.Override.id)).all()
    return [override_out(o, key) for o, key in rows]


@router.post("/rounds/{round_id}/overrides", status_code=201,
             summary="Pin a request's GPUs in the proposal (committee); the engine re-solves around it")
def add_override(round_id: RoundId, body: OverrideIn, ctx: CtxDep) -> OverrideOut:
    rnd = ops.get_round(ctx.session, round_id, lock=True)
    req = ops.request_in_round(ctx.session, rnd, body.request)
    wf.check_override(ctx.actor, ctx.tree, req.team.name)
    wf.check_adjustable(wf.RoundState(rnd.state))
    row = ops.set_override(ctx.session, ctx.actor, rnd, req, body.gpus, body.pools, body.reason)
    ctx.session.commit()
    return override_out(row, req.key)


@router.delete("/rounds/{round_id}/overrides/{override_id}", summary="Remove an override; the engine re-solves")
def remove_override(round_id: RoundId, override_id: Id, ctx: CtxDep) -> OverrideOut:
    rnd = ops.get_round(ctx.session, round_id, lock=True)
    row = ctx.session.get(m.Override, override_id)
    if row is None or row.round_id != rnd.id or not row.active:
        raise NotFound(f"no active override {override_id} in round {round_id}")
    req = ctx.session.get(m.Request, row.request_id)
    assert req is not None
    wf.check_override(ctx.actor, ctx.tree, req.team.name)
    wf.check_adjustable(wf.RoundState(rnd.state))
    ops.clear_override(ctx.session, ctx.actor, rnd, row)
    ctx.session.commit()
    return override_out(row, req.key)
