"""What the web pages show, read in one place: a round's overview and a team's page.

Each view says what the caller may do there by asking `fairshare.workflow`, so a page shows a
form only where the use case behind it would accept it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.engine.health import health
from fairshare.errors import UserError
from fairshare.service.ops.health import KEPT, published_rounds, round_inputs
from fairshare.service.ops.rounds import appeal_window_ends, get_round, open_appeals
from fairshare.service.ops.usage import RoundUsage, Usage, round_usage, usage_summary
from fairshare.store import models as m
from fairshare.store.repo import get_node, org_tree, root_node, round_scenario

PUBLISHED = (wf.RoundState.published, wf.RoundState.final)


def _allowed(check: Callable[[], None]) -> bool:
    """Would the workflow let this happen?"""
    try:
        check()
    except UserError:  # Forbidden or IllegalTransition
        return False
    return True


@dataclass(frozen=True)
class RunView:
    """The round's current proposal: the run, every node's entitlement, every request's result."""

    run: m.Run
    nodes: list[dict[str, Any]]
    results: list[m.RequestResult]


def run_view(session: Session, actor: wf.Actor, rnd: m.Round) -> RunView | None:
    """The proposal, if there is one and `actor` may see it."""
    if rnd.current_run_id is None or not wf.allocation_visible(wf.RoundState(rnd.state), actor):
        return None
    run = session.get(m.Run, rnd.current_run_id)
    assert run is not None
    nodes = [
        r.data
        for r in session.scalars(select(m.NodeResult).where(m.NodeResult.run_id == run.id).order_by(m.NodeResult.id))
    ]
    results = list(
        session.scalars(select(m.RequestResult).where(m.RequestResult.run_id == run.id).order_by(m.RequestResult.id))
    )
    return RunView(run, nodes, results)


@dataclass(frozen=True)
class RoundView:
    rnd: m.Round
    n_requests: int
    data: RunView | None
    may_run: bool  # the round's committee: may take its steps
    steps: list[str]
    window_ends: dt.datetime | None
    pools: list[dict[str, Any]]  # per pool of the proposal: capacity, allocated, GPUs asked by requests that fit
    date: str | None = None  # the round's own date (its policy's), from which urgency counts
    capacity: dict[str, int] = field(default_factory=dict)  # GPU type -> GPUs, from the round's own world
    may_copy: bool = False  # the round's committee may copy everyone's requests from the previous round


def round_view(session: Session, actor: wf.Actor, round_id: int) -> RoundView:
    rnd = get_round(session, round_id)
    data = run_view(session, actor, rnd)
    n_requests = len(
        list(session.scalars(select(m.Request.id).where(m.Request.round_id == rnd.id, m.Request.withdrawn.is_(False))))
    )
    tree = org_tree(session)
    may_run = _allowed(lambda: wf.check_run_round(actor, tree, rnd.node.name))
    world = round_scenario(session, rnd)
    capacity: dict[str, int] = {}
    for pool in world.pools:
        capacity[pool.gpu] = capacity.get(pool.gpu, 0) + pool.gpus
    return RoundView(
        rnd,
        n_requests,
        data,
        may_run,
        wf.next_steps(wf.RoundState(rnd.state)),
        appeal_window_ends(rnd),
        _pool_demand(session, rnd, data.run) if data is not None else [],
        date=world.policy.date.isoformat() if world.policy.date else None,
        capacity=capacity,
        may_copy=may_run and rnd.state == wf.RoundState.open.value and _has_previous(session, rnd),
    )


def _has_previous(session: Session, rnd: m.Round) -> bool:
    return session.scalars(select(m.Round.id).where(m.Round.id < rnd.id).limit(1)).first() is not None


def _pool_demand(session: Session, rnd: m.Round, run: m.Run) -> list[dict[str, Any]]:
    """Per pool: capacity, allocated, and the GPUs asked by requests that can run there, split into
    those that can run only in this pool (`only`) and those that could also run elsewhere (`shared`).
    `demand` is their sum; a request is counted in full in each pool it may use, so `only` is the
    pressure the pool alone must take and `shared` the part other pools could relieve."""
    scenario = round_scenario(session, rnd)
    usable = {r.id: [p["name"] for p in run.pools if r.may_run_on(p["gpu"], p["site"])] for r in scenario.requests}
    rows = []
    for pool in run.pools:
        only = sum(r.gpus for r in scenario.requests if usable[r.id] == [pool["name"]])
        shared = sum(r.gpus for r in scenario.requests if pool["name"] in usable[r.id] and len(usable[r.id]) > 1)
        rows.append(
            {
                "name": pool["name"],
                "capacity": pool["capacity"],
                "allocated": int(pool["allocated"]),
                "demand": only + shared,
                "only": only,
                "shared": shared,
            }
        )
    return rows


@dataclass(frozen=True)
class TeamView:
    rnd: m.Round
    team: str
    usage: list[Usage]  # the last 30 days, GPU types it used
    requests: list[m.Request]
    results: dict[str, m.RequestResult]
    entitlement: dict[str, Any] | None
    history: list[dict[str, Any]]  # per published or final round: received, asked, fair share
    appeals: list[tuple[m.Appeal, str]]
    gpu_types: list[str]
    may_see: bool  # the justifications and appeal reasons
    may_edit: bool  # submit requests
    may_appeal: bool
    round_usage: list[RoundUsage] = field(default_factory=list)  # while this round was in force, per GPU type
    may_copy: bool = False  # may copy its requests from the previous round


def team_view(session: Session, actor: wf.Actor, round_id: int, team: str, now: dt.datetime) -> TeamView:
    rnd = get_round(session, round_id)
    node = get_node(session, team)
    requests = list(
        session.scalars(
            select(m.Request)
            .where(m.Request.round_id == rnd.id, m.Request.withdrawn.is_(False), m.Request.team_id == node.id)
            .order_by(m.Request.id)
        )
    )
    data = run_view(session, actor, rnd)
    results = {r.key: r for r in data.results} if data else {}
    entitlement = next((n for n in data.nodes if n["node"] == team), None) if data else None
    history = []
    for past in session.scalars(select(m.Round).where(m.Round.state.in_(["published", "final"])).order_by(m.Round.id)):
        row = session.scalars(
            select(m.NodeResult).where(m.NodeResult.run_id == past.current_run_id, m.NodeResult.node == team)
        ).first()
        if row is not None:
            history.append(
                {
                    "round": past.name,
                    "total": row.data["total"],
                    "demand": row.data["demand"],
                    "fair_share": round(row.data["fair_share"] or 0, 1),
                }
            )
    appeals = session.execute(
        select(m.Appeal, m.Request.key)
        .join(m.Request, m.Request.id == m.Appeal.request_id)
        .where(m.Appeal.round_id == rnd.id, m.Appeal.team == team)
        .order_by(m.Appeal.id)
    ).all()
    pools = session.scalars(select(m.Pool).order_by(m.Pool.position)).all()
    usage = [u for u in usage_summary(session, team, now - dt.timedelta(days=30), now) if u.gpu_hours]
    tree = org_tree(session)
    state = wf.RoundState(rnd.state)
    in_round: list[RoundUsage] = []
    if state in PUBLISHED and data is not None:
        try:
            in_round = round_usage(session, team, rnd.id, now)
        except UserError:  # not a node of this round's org (a team that came later): nothing to show
            in_round = []
    may_edit = (
        _allowed(lambda: wf.check_edit_request(actor, tree, team))
        and _allowed(lambda: wf.check_requests_editable(state))
        and node.archived_at is None  # an archived team files no more requests: no form
    )
    return TeamView(
        rnd,
        team,
        usage,
        requests,
        results,
        entitlement,
        history,
        [(a, k) for a, k in appeals],
        list(dict.fromkeys(p.gpu for p in pools)),
        wf.may_see_justification(actor, tree, team),
        may_edit,
        _allowed(lambda: wf.check_appeal(actor, tree, team)) and state is wf.RoundState.published,
        round_usage=[u for u in in_round if u.gpu_hours or u.entitled_gpus],
        may_copy=may_edit and _has_previous(session, rnd),
    )


def team_request(session: Session, round_id: int, team: str, key: str) -> bool:
    """Is `key` a live request of `team` in the round?"""
    rnd = get_round(session, round_id)
    row = session.scalars(select(m.Request).where(m.Request.round_id == rnd.id, m.Request.key == key)).first()
    return row is not None and not row.withdrawn and row.team.name == team


@dataclass(frozen=True)
class SetupView:
    """What the home page offers for setting up rounds: create one (the root's committee), archive a
    team (admins), and the live org nodes below the root."""

    may_create: bool
    may_archive: bool
    nodes: list[str]


def setup_view(session: Session, actor: wf.Actor) -> SetupView:
    tree = org_tree(session)
    root = root_node(session)
    live = [
        n.name
        for n in session.scalars(select(m.Node).where(m.Node.archived_at.is_(None)).order_by(m.Node.name))
        if n.id != root.id
    ]
    return SetupView(_allowed(lambda: wf.check_run_round(actor, tree, root.name)), actor.is_admin, live)


@dataclass(frozen=True)
class StreakGrowth:
    """A node whose starved streak (docs/health.md) would grow if the proposal were published."""

    node: str
    streak_now: int
    streak_after: int
    share_of_fair: float | None  # in the proposal


def streaks_if_published(
    session: Session, actor: wf.Actor, rnd: m.Round, now: dt.datetime, last: int = 12
) -> list[StreakGrowth]:
    """Health over the last published rounds, with and without this round's proposal as the newest
    one: the nodes whose starved streak grows.  Empty when there is no proposal to read."""
    if rnd.current_run_id is None or not actor.is_committee:
        return []
    past = [r for r in published_rounds(session, (), last) if r.id != rnd.id]
    inputs = round_inputs(session, [*past, rnd], now)
    after = health(inputs, kept=KEPT)
    before = {n.name: n.starved_streak for n in health(inputs[:-1], kept=KEPT).nodes} if past else {}
    out = []
    for n in after.nodes:
        was = before.get(n.name, 0)
        if n.starved_streak > was:
            latest = n.latest()
            out.append(StreakGrowth(n.name, was, n.starved_streak, latest.share_of_fair if latest else None))
    return out


def request_row(session: Session, round_id: int, team: str, key: str) -> m.Request | None:
    """A live request of `team` in the round by its id, for the edit and withdraw forms."""
    rnd = get_round(session, round_id)
    row = session.scalars(select(m.Request).where(m.Request.round_id == rnd.id, m.Request.key == key)).first()
    return row if row is not None and not row.withdrawn and row.team.name == team else None


def team_health(session: Session, actor: wf.Actor, team: str, now: dt.datetime, last: int = 12) -> list[dict[str, Any]]:
    """Per published round, in one unit (GPUs): what `team` received, its fair share by weights alone,
    what it used on average while the round was in force (GPU-hours / hours), and received as a
    percentage of fair (docs/health.md).  Empty before the first publication."""
    rows = [r for r in published_rounds(session, (), last) if wf.allocation_visible(wf.RoundState(r.state), actor)]
    if not rows:
        return []
    inputs = round_inputs(session, rows, now)
    try:
        node = health(inputs, kept=KEPT).node(team)
    except (KeyError, UserError):  # not a node of these rounds, or rounds of different labs
        return []
    hours = {i.name: i.hours for i in inputs}
    out = []
    for r in node.rounds:
        span = hours.get(r.round)
        out.append(
            {
                "round": r.round,
                "received": r.received_gpus,
                "fair": round(r.fair_share_gpus, 1),
                "used": round(r.used / span, 1) if r.used is not None and span else None,
                "demand": r.demand,
                "pct": None if r.share_of_fair is None else round(100 * r.share_of_fair),
                "starved": r.starved,
            }
        )
    return out


def finalize_blocker(session: Session, rnd: m.Round, now: dt.datetime) -> str | None:
    """Why finalize would be refused now (the appeal window still open, appeals awaiting a ruling),
    or None when it would be accepted: the page offers the button only then."""
    pending = open_appeals(session, rnd)
    try:
        wf.round_step(
            wf.RoundState(rnd.state),
            "finalize",
            now=now,
            appeal_window_ends=appeal_window_ends(rnd),
            pending_appeals=pending,
        )
    except wf.IllegalTransition as e:
        return str(e)
    return None
