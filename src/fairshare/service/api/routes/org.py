"""Org tree, pools, members and tokens; scenario import and export."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from fairshare.scenario import NAME_MAX, NAME_PATTERN, Scenario
from fairshare.service.api.deps import CtxDep
from fairshare.service.api.schemas import (
    ArchivedOut,
    GrantIn,
    GrantOut,
    ImportOut,
    MemberIn,
    MemberOut,
    NodeOut,
    PoolOut,
    TokenIn,
    TokenOut,
)
from fairshare.service.ops import lab
from fairshare.store import models as m
from fairshare.workflow import Role

router = APIRouter(tags=["organisation"])


def node_out(n: m.Node, parent: str | None) -> NodeOut:
    return NodeOut(name=n.name, parent=parent, weight=n.weight, guarantee=n.guarantee, limit=n.limit, version=n.version)


def member_out(member: m.Member) -> MemberOut:
    return MemberOut(
        name=member.name,
        email=member.email,
        grants=[GrantOut(role=Role(g.role), node=g.node.name) for g in member.grants],
    )


@router.get("/me", summary="Who the token belongs to, and its roles")
def me(ctx: CtxDep) -> MemberOut:
    return member_out(lab.member(ctx.session, ctx.actor.name))


@router.get("/nodes", summary="The org tree, parents before children")
def list_nodes(ctx: CtxDep) -> list[NodeOut]:
    return [node_out(n, parent) for n, parent in lab.nodes(ctx.session)]


@router.get("/nodes/{name}", summary="One org node")
def get_node(name: str, ctx: CtxDep) -> NodeOut:
    return node_out(*lab.node(ctx.session, name))


@router.delete(
    "/nodes/{name}",
    summary="Archive a node and its subtree (admin)",
    description="A team that leaves: it takes no part in new rounds and leaves the request forms; past rounds "
    "keep it, and the schedulers' next sync retires its account and queue.  409 naming the live requests "
    "while a round not yet published still holds them (a published round keeps the node in its own world).",
)
def archive_node(name: str, ctx: CtxDep) -> ArchivedOut:
    return ArchivedOut(archived=lab.archive_node(ctx.session, ctx.actor, name, ctx.now))


@router.get("/pools", summary="GPU pools (one GPU type at one site)")
def list_pools(ctx: CtxDep) -> list[PoolOut]:
    return [
        PoolOut(name=p.name, gpu=p.gpu, site=p.site, gpus=p.gpus, version=p.version) for p in lab.pools(ctx.session)
    ]


@router.post("/import", status_code=201, summary="Import pools, org tree and policy (and requests into a round)")
def import_file(
    scenario: Scenario,
    ctx: CtxDep,
    round: Annotated[
        str | None,
        Query(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN, description="load the requests into this round"),
    ] = None,
    prune: Annotated[bool, Query(description="archive the org nodes the file leaves out")] = False,
    date: Annotated[
        dt.date | None, Query(description="a new round's own date (default: the file's policy.date)")
    ] = None,
    appeal_window_hours: Annotated[float, Query(gt=0, le=24 * 365, description="a new round's appeal window")] = 14
    * 24.0,
    appeal_response_hours: Annotated[
        float, Query(gt=0, le=24 * 365, description="a new round's time to answer an appeal")
    ] = 3 * 24.0,
) -> ImportOut:
    new_round = lab.NewRound(date, appeal_window_hours, appeal_response_hours)
    return ImportOut(
        **lab.import_scenario(ctx.session, ctx.actor, scenario, round, prune=prune, new_round=new_round, now=ctx.now)
    )


@router.get("/export", summary="The org, pools and policy as a scenario; with round_id, its requests too")
def export_file(ctx: CtxDep, round_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Scenario:
    return lab.export(ctx.session, ctx.actor, round_id)


@router.get("/members", summary="Members and their roles (committee and admins)")
def list_members(ctx: CtxDep) -> list[MemberOut]:
    return [member_out(x) for x in lab.members(ctx.session, ctx.actor)]


@router.post("/members", status_code=201, summary="Add a member (admin)")
def add_member(body: MemberIn, ctx: CtxDep) -> MemberOut:
    return member_out(
        lab.add_member(
            ctx.session,
            ctx.actor,
            body.name,
            body.email,
            [(g.role, g.node) for g in body.grants],
            body.model_dump(mode="json"),
        )
    )


@router.post("/members/{name}/grants", status_code=201, summary="Give a member a role over a subtree (admin)")
def add_grant(name: str, body: GrantIn, ctx: CtxDep) -> MemberOut:
    return member_out(lab.add_grant(ctx.session, ctx.actor, name, body.role, body.node, body.model_dump(mode="json")))


@router.post("/members/{name}/tokens", status_code=201, summary="A new API token for a member (admin)")
def add_token(name: str, body: TokenIn, ctx: CtxDep) -> TokenOut:
    return TokenOut(member=name, token=lab.add_token(ctx.session, ctx.actor, name, body.label))
