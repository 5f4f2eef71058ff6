"""Org tree, pools, members and tokens; scenario import and export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from fairshare import workflow as wf
from fairshare.scenario import NAME_MAX, NAME_PATTERN, Scenario
from fairshare.service.api.deps import CtxDep
from fairshare.service.ops.rounds import get_round
from fairshare.service.api.schemas import (
    GrantIn, ImportOut, MemberIn, MemberOut, NodeOut, PoolOut, TokenIn, TokenOut,
)
from fairshare.store import models as m
from fairshare.store.repo import (
    NotFound, audit, create_token, ensure_member, export_scenario, grant, import_scenario,
)

router = APIRouter(tags=["organisation"])


def node_out(n: m.Node, parent: str | None) -> NodeOut:
    return NodeOut(name=n.name, parent=parent, weight=n.weight, guarantee=n.guarantee, limit=n.limit,
                   version=n.version)


def member_out(member: m.Member) -> MemberOut:
    return MemberOut(name=member.name, email=member.email,
                     grants=[{"role": g.role, "node": g.node.name} for g in member.grants])


@router.get("/me", summary="Who the token belongs to, and its roles")
def me(ctx: CtxDep) -> MemberOut:
    member = ctx.session.scalars(select(m.Member).where(m.Member.name == ctx.actor.name)).one()
    return member_out(member)


@router.get("/nodes", summary="The org tree, parents before children")
def list_nodes(ctx: CtxDep) -> list[NodeOut]:
    rows = list(ctx.session.scalars(select(m.Node).order_by(m.Node.position, m.Node.id)))
    name_of = {n.id: n.name for n in rows}
    return [node_out(n, name_of.get(n.parent_id) if n.parent_id else None) for n in rows]


@router.get("/nodes/{name}", summary="One org node")
def get_node(name: str, ctx: CtxDep) -> NodeOut:
    node = ctx.session.scalars(select(m.Node).where(m.Node.name == name)).first()
    if node is None:
        raise NotFound(f"no org node named {name!r}")
    parent = ctx.session.get(m.Node, node.parent_id) if node.parent_id else None
    return node_out(node, parent.name if parent else None)


@router.get("/pools", summary="GPU pools (one GPU type at one site)")
def list_pools(ctx: CtxDep) -> list[PoolOut]:
    return [PoolOut(name=p.name, gpu=p.gpu, site=p.site, gpus=p.gpus, version=p.version)
            for p in ctx.session.scalars(select(m.Pool).order_by(m.Pool.position, m.Pool.id))]


@router.post("/import", status_code=201, summary="Import pools, org tree and policy (and requests into a round)")
def import_file(scenario: Scenario, ctx: CtxDep,
                round: Annotated[str | None, Query(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN,
                                                   description="load the requests into this round")] = None,
                ) -> ImportOut:
    wf.check_admin(ctx.actor)
    counts = import_scenario(ctx.session, scenario, round, actor=ctx.actor.name)
    audit(ctx.session, ctx.actor.name, "scenario.import", "lab", scenario.name, None, {**counts, "round": round})
    ctx.session.commit()
    return ImportOut(**counts)


@router.get("/export", summary="The org, pools and policy as a scenario; with round_id, its requests too")
def export_file(ctx: CtxDep, round_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Scenario:
    if not ctx.actor.is_committee:
        raise wf.Forbidden(f"{ctx.actor.name} is neither on a committee nor an admin; export holds justifications")
    scenario = export_scenario(ctx.session, get_round(ctx.session, round_id) if round_id else None)
    # a committee sees the justifications of its own subtree only, as on GET /requests
    return scenario.model_copy(update={"requests": [
        r if wf.may_see_justification(ctx.actor, ctx.tree, r.team) else r.model_copy(update={"justification": None})
        for r in scenario.requests]})


@router.get("/members", summary="Members and their roles (committee and admins)")
def list_members(ctx: CtxDep) -> list[MemberOut]:
    if not ctx.actor.is_committee:
        raise wf.Forbidden(f"{ctx.actor.name} is neither on a committee nor an admin")
    return [member_out(x) for x in ctx.session.scalars(select(m.Member).order_by(m.Member.name))]


@router.post("/members", status_code=201, summary="Add a member (admin)")
def add_member(body: MemberIn, ctx: CtxDep) -> MemberOut:
    wf.check_admin(ctx.actor)
    if ctx.session.scalars(select(m.Member).where(m.Member.name == body.name)).first():
        raise wf.IllegalTransition(f"member {body.name!r} exists; add grants with POST /members/{body.name}/grants")
    member = ensure_member(ctx.session, body.name, body.email)
    for g in body.grants:
        grant(ctx.session, member, g.role, g.node)
    audit(ctx.session, ctx.actor.name, "member.add", "member", body.name, None, body.model_dump(mode="json"))
    ctx.session.commit()
    return member_out(member)


def _member(ctx: CtxDep, name: str) -> m.Member:
    member = ctx.session.scalars(select(m.Member).where(m.Member.name == name)).first()
    if member is None:
        raise NotFound(f"no member named {name!r}")
    return member


@router.post("/members/{name}/grants", status_code=201, summary="Give a member a role over a subtree (admin)")
def add_grant(name: str, body: GrantIn, ctx: CtxDep) -> MemberOut:
    wf.check_admin(ctx.actor)
    member = _member(ctx, name)
    grant(ctx.session, member, body.role, body.node)
    audit(ctx.session, ctx.actor.name, "member.grant", "member", name, None, body.model_dump(mode="json"))
    ctx.session.commit()
    ctx.session.refresh(member)
    return member_out(member)


@router.post("/members/{name}/tokens", status_code=201, summary="A new API token for a member (admin)")
def add_token(name: str, body: TokenIn, ctx: CtxDep) -> TokenOut:
    wf.check_admin(ctx.actor)
    member = _member(ctx, name)
    token = create_token(ctx.session, member, body.label)
    audit(ctx.session, ctx.actor.name, "token.create", "member", name, None, {"label": body.label})
    ctx.session.commit()
    return TokenOut(member=name, token=token)
