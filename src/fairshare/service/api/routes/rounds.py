"""Rounds: create, step through the workflow, read the proposal and entitlements, override."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response

from fairshare import workflow as wf
from fairshare.errors import NotFound
from fairshare.scenario import Scenario
from fairshare.service.api.deps import ActorDep, Ctx, CtxDep, Id, PagingDep, RoundId
from fairshare.service.api.entitlement_cache import EntitlementCache
from fairshare.service.api.push import push_later
from fairshare.service.api.schemas import (
    AllocationOut,
    ChangeOut,
    EntitlementOut,
    LeverOut,
    LeversOut,
    LoserOut,
    MovedOut,
    OverrideIn,
    OverrideOut,
    Page,
    PreviewOut,
    RoundIn,
    RoundOut,
    RunOut,
    WhatIfIn,
    WhatIfOut,
)
from fairshare.service.ops import lab, overrides, whatif
from fairshare.service.ops import rounds as ops
from fairshare.service.ops.levers import SECONDS, request_levers
from fairshare.service.ops.previews import Preview
from fairshare.store import models as m

router = APIRouter(tags=["rounds"])
DryRun = Annotated[
    bool, Query(description="true: answer what it would change (and whether it would be refused); save nothing")
]


class Step(StrEnum):
    open = "open"
    close = "close"
    reopen = "reopen"
    propose = "propose"
    publish = "publish"
    finalize = "finalize"


def round_out(rnd: m.Round) -> RoundOut:
    return RoundOut(
        id=rnd.id,
        name=rnd.name,
        state=rnd.state,
        node=rnd.node.name,
        policy=rnd.policy,
        appeal_window_hours=rnd.appeal_window_hours,
        appeal_response_hours=rnd.appeal_response_hours,
        published_at=rnd.published_at,
        appeal_window_ends=ops.appeal_window_ends(rnd),
        created_at=rnd.created_at,
        current_run_id=rnd.current_run_id,
        version=rnd.version,
        next_steps=wf.next_steps(wf.RoundState(rnd.state)),
    )


@router.get("/rounds", summary="Rounds, newest first")
def list_rounds(
    ctx: CtxDep,
    paging: PagingDep,
    state: Annotated[wf.RoundState | None, Query(description="only rounds in this state")] = None,
) -> Page[RoundOut]:
    rows, total = ops.list_rounds(ctx.session, state, paging.limit, paging.offset)
    return Page(items=[round_out(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset)


@router.post("/rounds", status_code=201, summary="Create a round (draft) run by the root's committee")
def create_round(body: RoundIn, ctx: CtxDep) -> RoundOut:
    rnd = ops.create_round(
        ctx.session,
        ctx.actor,
        body.name,
        body.policy,
        body.appeal_window_hours,
        body.appeal_response_hours,
        body.model_dump(mode="json"),
        date=body.date,
    )
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
        return _step(step, round_id, ctx, request, background)

    endpoint.__name__ = f"{step.value}_round"
    return endpoint


def propose_round(
    round_id: RoundId, ctx: CtxDep, request: Request, background: BackgroundTasks, dry_run: DryRun = False
) -> RoundOut | PreviewOut:
    if dry_run:
        return preview_out(ops.preview_propose(ctx.session, ctx.actor, round_id, ctx.now))
    return _step(Step.propose, round_id, ctx, request, background)


def _step(step: Step, round_id: int, ctx: Ctx, request: Request, background: BackgroundTasks) -> RoundOut:
    rnd = ops.get_round(ctx.session, round_id)
    return round_out(
        ops.step_round(
            ctx.session,
            ctx.actor,
            rnd,
            step.value,
            ctx.now,
            solve_timer=request.app.state.metrics.solve.observe,
            on_published=push_later(request, background, ctx.actor.name),
        )
    )


for _each in Step:
    router.add_api_route(
        f"/rounds/{{round_id}}/{_each.value}",
        propose_round if _each is Step.propose else _step_endpoint(_each),
        methods=["POST"],
        summary=f"{_each.value.capitalize()} the round (its committee)",
        description=STEP_HELP[_each.value]
        + (
            " With `dry_run=true`: what it would change against the current proposal; nothing saved."
            if _each is Step.propose
            else ""
        ),
        response_model=RoundOut | PreviewOut if _each is Step.propose else RoundOut,
    )


@router.get(
    "/rounds/{round_id}/scenario",
    summary="The round's own world and requests as a scenario (committees)",
    description="Its pools, org tree and policy as frozen when it closed (while draft or open: the lab's), "
    "and its live requests; what `fairshare export --round` prints.  A committee sees the justifications "
    "of its own subtree only.",
)
def round_scenario(round_id: RoundId, ctx: CtxDep) -> Scenario:
    return lab.export(ctx.session, ctx.actor, round_id)


@router.get("/rounds/{round_id}/runs", summary="Every engine run of the round, newest first")
def list_runs(round_id: RoundId, ctx: CtxDep, paging: PagingDep) -> Page[RunOut]:
    rows = ops.runs(ctx.session, ctx.actor, round_id)
    page = [RunOut.model_validate(r, from_attributes=True) for r in rows[paging.offset : paging.offset + paging.limit]]
    return Page(items=page, total=len(rows), limit=paging.limit, offset=paging.offset)


@router.get("/rounds/{round_id}/allocation", summary="GPUs per request and pool, each with its reason")
def allocation(
    round_id: RoundId,
    ctx: CtxDep,
    paging: PagingDep,
    team: Annotated[str | None, Query(max_length=200, description="only this team's requests")] = None,
) -> Page[AllocationOut]:
    rows, total = ops.allocation(ctx.session, ctx.actor, round_id, team, paging.limit, paging.offset)
    items = [
        AllocationOut(
            request=r.key,
            team=r.team,
            demand=r.demand,
            total=r.total,
            gpus=r.gpus,
            effective=r.effective,
            weight=r.weight,
            reason_code=r.reason_code,
            reason=r.reason,
            level=r.level,
        )
        for r in rows
    ]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


def _entitlement(rnd: m.Round, row: m.NodeResult) -> EntitlementOut:
    return EntitlementOut(round_id=rnd.id, round_state=rnd.state, run_id=row.run_id, **row.data)


@router.get("/rounds/{round_id}/entitlements", summary="What every node gets, and why")
def list_entitlements(
    round_id: RoundId,
    ctx: CtxDep,
    paging: PagingDep,
    parent: Annotated[str | None, Query(max_length=200, description="only this node's children")] = None,
) -> Page[EntitlementOut]:
    rnd, rows = ops.node_results(ctx.session, ctx.actor, round_id)
    if parent is not None:
        rows = [r for r in rows if r.data.get("parent") == parent]
    page = rows[paging.offset : paging.offset + paging.limit]
    return Page(items=[_entitlement(rnd, r) for r in page], total=len(rows), limit=paging.limit, offset=paging.offset)


@router.get(
    "/rounds/{round_id}/entitlements/{node}",
    response_model=EntitlementOut,
    summary="What a team (or any node) gets per pool, its demand, its fair share, and why",
)
async def get_entitlement(round_id: RoundId, node: str, actor: ActorDep, request: Request) -> Response:
    # the most read endpoint: async, one shared read of the round's (state, run) per database round
    # trip, and the answer kept as bytes per (round, state, run, node); see entitlement_cache.
    # Once kept, fast_entitlements serves it before routing.  The checks, their order and their
    # messages are ops.visible_round's.
    cache: EntitlementCache = request.app.state.entitlement_cache
    stamp = await cache.stamp(round_id)
    if stamp is None:
        raise NotFound(f"no round with id {round_id}")
    state, run_id = stamp
    ops.check_visible(actor, round_id, state, run_id)
    assert run_id is not None
    body = await cache.answer(round_id, state, run_id, node)
    if body is None:
        raise NotFound(f"no org node named {node!r} in round {round_id}")
    return Response(body, media_type="application/json")


def override_out(o: m.Override, key: str) -> OverrideOut:
    return OverrideOut(
        id=o.id,
        request=key,
        gpus=o.gpus,
        reason=o.reason,
        author=o.author,
        source=o.source,
        active=o.active,
        at=o.at,
        authority=o.authority,
        scope=o.scope,
        replaced_by=o.replaced_by,
        ended_by=o.ended_by,
    )


def preview_out(p: Preview) -> PreviewOut:
    return PreviewOut(
        refused=p.refused is not None,
        reason=p.refused,
        absorbed_by=p.scope,
        changes=[
            MovedOut(
                kind=c.kind,
                name=c.name,
                gpus_before=c.gpus_before,
                gpus_after=c.gpus_after,
                gpus_delta=c.delta,
                effective_before=c.effective_before,
                effective_after=c.effective_after,
                effective_delta=round(c.effective_after - c.effective_before, 3),
            )
            for c in p.changes
        ],
    )


@router.get("/rounds/{round_id}/overrides", summary="Manual overrides of the round, active and past")
def list_overrides(round_id: RoundId, ctx: CtxDep, paging: PagingDep) -> Page[OverrideOut]:
    rows = overrides.list_overrides(ctx.session, ctx.actor, round_id)
    items = [override_out(o, key) for o, key in rows[paging.offset : paging.offset + paging.limit]]
    return Page(items=items, total=len(rows), limit=paging.limit, offset=paging.offset)


@router.post(
    "/rounds/{round_id}/overrides",
    status_code=201,
    summary="Pin a request's GPUs in the proposal (committee); the engine re-solves around it",
)
def add_override(
    round_id: RoundId, body: OverrideIn, ctx: CtxDep, response: Response, dry_run: DryRun = False
) -> OverrideOut | PreviewOut:
    if dry_run:
        response.status_code = 200
        return preview_out(
            overrides.preview_override(
                ctx.session, ctx.actor, round_id, body.request, body.gpus, body.pools, body.reason
            )
        )
    row = overrides.add_override(ctx.session, ctx.actor, round_id, body.request, body.gpus, body.pools, body.reason)
    return override_out(row, body.request)


@router.delete("/rounds/{round_id}/overrides/{override_id}", summary="Remove an override; the engine re-solves")
def remove_override(
    round_id: RoundId, override_id: Id, ctx: CtxDep, dry_run: DryRun = False
) -> OverrideOut | PreviewOut:
    if dry_run:
        return preview_out(overrides.preview_removal(ctx.session, ctx.actor, round_id, override_id))
    row, key = overrides.remove_override(ctx.session, ctx.actor, round_id, override_id)
    return override_out(row, key)


@router.post(
    "/rounds/{round_id}/whatif",
    summary="What if weights, capacities, priorities, guarantees, limits or minimums changed, pools were added or "
    "requests dropped? Nothing is saved",
    description="Who gains and who loses, in GPUs per team and per request, against the round's current "
    "allocation (honouring its overrides).  On a round not yet published, for the committee.",
)
def what_if(round_id: RoundId, body: WhatIfIn, ctx: CtxDep) -> WhatIfOut:
    edits = whatif.Edits(
        frozenset(body.drop),
        dict(body.weights),
        dict(body.capacity),
        dict(body.priorities),
        whatif.new_pools([p.model_dump() for p in body.new_pools]),
        {node: dict(counts) for node, counts in body.guarantees.items()},
        {node: dict(counts) for node, counts in body.limits.items()},
        dict(body.minimums),
    )
    changes = whatif.compare(whatif.start(ctx.session, ctx.actor, round_id), edits)
    return WhatIfOut(
        changes=[
            ChangeOut(kind=c.kind, name=c.name, before=c.before, after=c.after, delta=c.delta)
            for c in changes
            if c.delta != 0
        ]
    )


@router.get(
    "/rounds/{round_id}/requests/{key}/levers",
    summary="What would give a request more: the smallest change of each lever, and who would pay",
    description="Its minimum (the largest that is funded), its weight and priority, its team's and each "
    "ancestor's weight, guarantees and limits on its branch, capacity of each pool it can use, other sites "
    "and GPU types; each re-solved with the round's overrides.  Visible as the allocation is: the committee "
    f"before publication, everyone after.  Nothing is saved.  The search stops after {SECONDS:g} s "
    "(`complete` false, the rest in `not_searched`).",
)
def request_levers_route(round_id: RoundId, key: str, ctx: CtxDep) -> LeversOut:
    scenario, found = request_levers(ctx.session, ctx.actor, round_id, key)
    team = next(r.team for r in scenario.requests if r.id == key)

    def lever_out(lv: Any) -> LeverOut:
        return LeverOut(
            kind=lv.kind.value,
            target=lv.target,
            gpu=lv.gpu,
            label=lv.label,
            description=lv.description,
            before=lv.before,
            after=lv.after,
            gain=lv.gain,
            effective_gain=round(lv.effective_gain, 3),
            funded=lv.funded,
            losers=[LoserOut(team=x.team, gpus=x.gpus, effective=round(x.effective, 3)) for x in lv.losers],
            searched=lv.searched,
            solves=lv.solves,
        )

    return LeversOut(
        request=key,
        team=team,
        satisfied=found.satisfied,
        levers=[lever_out(lv) for lv in found.levers],
        no_effect=[lever_out(lv) for lv in found.no_effect],
        not_searched=found.not_searched,
        complete=found.complete,
        solves=found.solves,
        bound=found.bound,
    )
