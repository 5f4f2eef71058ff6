"""The pages: sign-in, round overview, team page, what-if, appeals queue, audit log.

Server-rendered (Jinja2) on the same rules as the API: `fairshare.workflow` decides what each
person may see and do, `fairshare.service.ops.rounds` performs the steps.  Forms post back, show
errors next to the field they concern and keep what the user typed.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.engine import InfeasibleGuarantees
from fairshare.engine.overrides import allocate_with_pins
from fairshare.scenario import MAX_GPUS, MAX_WEIGHT, Priority, Request as RequestModel, ScenarioError
from fairshare.service.ops import actions
from fairshare.service.ops import rounds as ops
from fairshare.service.api.deps import Ctx, get_session
from fairshare.service.api.schemas import TEXT_MAX
from fairshare.service.api.routes.usage import usage_summary
from fairshare.store import models as m
from fairshare.store.repo import NotFound, actor_of, get_node, member_by_token, round_scenario, token_digest
from fairshare.service.web import charts
from fairshare.service.web.auth import COOKIE, MAX_AGE
from fairshare.engine.whatif import diff as diff_allocations

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
templates.env.filters["tojson_compact"] = lambda v: json.dumps(v, separators=(",", ":"), default=str)
LOGIN_CSRF = "fairshare_login_csrf"


def web_ctx(request: Request, session: Annotated[Session, Depends(get_session)]) -> Ctx:
    member = request.app.state.web_sessions.member(session, request)
    return Ctx(session, actor_of(member), request.app.state.clock())


WebCtx = Annotated[Ctx, Depends(web_ctx)]


def render(request: Request, ctx: Ctx | None, name: str, status: int = 200, **data: Any) -> HTMLResponse:
    extra: dict[str, Any] = {}
    if ctx is not None:
        extra = {"me": ctx.actor, "csrf": request.app.state.web_sessions.csrf(request),
                 "is_committee": ctx.actor.is_committee, "my_teams": _my_teams(ctx)}
    return templates.TemplateResponse(request, name, {"msg": request.query_params.get("msg"),
                                                      "error": request.query_params.get("error"), **extra, **data},
                                      status_code=status)


def back(url: str, msg: str | None = None, error: str | None = None) -> RedirectResponse:
    sep = "&" if "?" in url else "?"
    if msg:
        url += f"{sep}msg={quote(msg)}"
    elif error:
        url += f"{sep}error={quote(error)}"
    return RedirectResponse(url, status_code=303)


def _whole(raw: str, least: int = 0, most: int = MAX_GPUS) -> int | None:
    """A form's whole number in [least, most], or None: ASCII digits only ("²".isdigit() is
    true, but int() refuses it) and few of them (int() refuses over 4,300 digits)."""
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(most)):
        return None
    value = int(raw)
    return value if least <= value <= most else None


def _my_teams(ctx: Ctx) -> list[str]:
    return [g.node for g in ctx.actor.grants if g.role in (wf.Role.member, wf.Role.lead)]


# --- sign in and out ------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    csrf = secrets.token_urlsafe(16)
    resp = render(request, None, "login.html", next=next, login_csrf=csrf, errors={}, values={})
    resp.set_cookie(LOGIN_CSRF, csrf, httponly=True, samesite="strict", secure=request.app.state.web_sessions.secure)
    return resp


@router.post("/login")
def login(request: Request, session: Annotated[Session, Depends(get_session)], token: Annotated[str, Form()] = "",
          csrf: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
    if not csrf or csrf != request.cookies.get(LOGIN_CSRF):
        return render(request, None, "login.html", 403, next=next, login_csrf=request.cookies.get(LOGIN_CSRF, ""),
                      errors={"form": "this sign-in form is stale; reload the page"}, values={"token": token})
    member = member_by_token(session, token.strip()) if token.strip() else None
    if member is None:
        error = "enter your API token" if not token.strip() else "unknown or revoked token; ask an admin for one"
        return render(request, None, "login.html", 401, next=next, login_csrf=csrf, errors={"token": error},
                      values={"token": token})
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    resp = RedirectResponse(target, status_code=303)
    sessions = request.app.state.web_sessions
    resp.set_cookie(COOKIE, sessions.cookie_for(token_digest(token.strip())), max_age=MAX_AGE, httponly=True,
                    samesite="strict", secure=sessions.secure)
    resp.delete_cookie(LOGIN_CSRF)
    return resp


@router.post("/logout")
def logout(request: Request, ctx: WebCtx, csrf: Annotated[str, Form()] = "") -> Response:
    request.app.state.web_sessions.check_csrf(request, csrf)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE)
    return resp


# --- rounds ---------------------------------------------------------------------------------------


@router.get("/")
def home(request: Request, ctx: WebCtx) -> HTMLResponse:
    rounds = list(ctx.session.scalars(select(m.Round).order_by(m.Round.id.desc())))
    return render(request, ctx, "home.html", rounds=rounds)


def _run_data(ctx: Ctx, rnd: m.Round) -> dict[str, Any] | None:
    if rnd.current_run_id is None or not wf.allocation_visible(wf.RoundState(rnd.state), ctx.actor):
        return None
    run = ctx.session.get(m.Run, rnd.current_run_id)
    assert run is not None
    nodes = [r.data for r in ctx.session.scalars(select(m.NodeResult).where(m.NodeResult.run_id == run.id)
                                                   .order_by(m.NodeResult.id))]
    results = list(ctx.session.scalars(select(m.RequestResult).where(m.RequestResult.run_id == run.id)
                                       .order_by(m.RequestResult.id)))
    return {"run": run, "nodes": nodes, "results": results}


def _pool_demand(ctx: Ctx, rnd: m.Round, run: m.Run) -> list[dict[str, Any]]:
    scenario = round_scenario(ctx.session, rnd)
    rows = []
    for pool in run.pools:
        asked = sum(r.gpus for r in scenario.requests
                    if (r.speed is None or pool["gpu"] in r.speed) and (r.sites is None or pool["site"] in r.sites))
        rows.append({"name": pool["name"], "capacity": pool["capacity"], "allocated": int(pool["allocated"]),
                     "demand": asked})
    return rows


@router.get("/rounds/{round_id}")
def round_page(request: Request, round_id: int, ctx: WebCtx) -> HTMLResponse:
    rnd = ops.get_round(ctx.session, round_id)
    data = _run_data(ctx, rnd)
    n_requests = len(list(ctx.session.scalars(select(m.Request.id).where(
        m.Request.round_id == rnd.id, m.Request.withdrawn.is_(False)))))
    view: dict[str, Any] = {"rnd": rnd, "n_requests": n_requests, "data": data,
                            "may_run": ctx.actor.holds([wf.Role.committee], rnd.node.name, ctx.tree),
                            "steps": wf.next_steps(wf.RoundState(rnd.state)),
                            "window_ends": ops.appeal_window_ends(rnd)}
    if data is not None:
        pools = _pool_demand(ctx, rnd, data["run"])
        teams = [n for n in data["nodes"] if n["reasons"] and not _has_children(data["nodes"], n["node"])]
        least = sorted(teams, key=lambda n: (n["total"] / n["demand"]) if n["demand"] else 1.0)[:5]
        below = [r for r in data["results"] if r.reason_code == "below_min"]
        view.update(pools=pools, least=least, below=below, fairness=data["run"].fairness,
                    capacity_chart=charts.capacity_demand(pools), org_chart=charts.org_sunburst(data["nodes"]))
    return render(request, ctx, "round.html", **view)


def _has_children(nodes: list[dict[str, Any]], name: str) -> bool:
    return any(n["parent"] == name for n in nodes)


@router.post("/rounds/{round_id}/step")
def round_step(request: Request, round_id: int, ctx: WebCtx, background: BackgroundTasks,
               step: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "") -> Response:
    request.app.state.web_sessions.check_csrf(request, csrf)
    try:
        rnd = actions.step_round(ctx, request.app, background, round_id, step)
    except (wf.IllegalTransition, wf.Forbidden, InfeasibleGuarantees, ScenarioError) as e:
        ctx.session.rollback()
        return back(f"/rounds/{round_id}", error=str(e))
    return back(f"/rounds/{round_id}", msg=f"round {step}: now {rnd.state}")


# --- team page ------------------------------------------------------------------------------------


def _team_view(ctx: Ctx, rnd: m.Round, team: str) -> dict[str, Any]:
    get_node(ctx.session, team)
    requests = list(ctx.session.scalars(select(m.Request).where(
        m.Request.round_id == rnd.id, m.Request.withdrawn.is_(False),
        m.Request.team_id == get_node(ctx.session, team).id).order_by(m.Request.id)))
    data = _run_data(ctx, rnd)
    results = {r.key: r for r in data["results"]} if data else {}
    entitlement = next((n for n in data["nodes"] if n["node"] == team), None) if data else None
    history = []
    for past in ctx.session.scalars(select(m.Round).where(m.Round.state.in_(["published", "final"]))
                                    .order_by(m.Round.id)):
        row = ctx.session.scalars(select(m.NodeResult).where(m.NodeResult.run_id == past.current_run_id,
                                                             m.NodeResult.node == team)).first()
        if row is not None:
            history.append({"round": past.name, "total": row.data["total"], "demand": row.data["demand"],
                            "fair_share": round(row.data["fair_share"] or 0, 1)})
    appeals = ctx.session.execute(select(m.Appeal, m.Request.key).join(m.Request, m.Request.id == m.Appeal.request_id)
                                  .where(m.Appeal.round_id == rnd.id, m.Appeal.team == team)
                                  .order_by(m.Appeal.id)).all()
    pools = ctx.session.scalars(select(m.Pool).order_by(m.Pool.position)).all()
    usage = [u for u in usage_summary(ctx.session, team, ctx.now - dt.timedelta(days=30), ctx.now) if u.gpu_hours]
    return {"rnd": rnd, "team": team, "usage": usage, "requests": requests, "results": results, "entitlement": entitlement,
            "history": history, "history_chart": charts.team_history(history) if history else None,
            "appeals": appeals, "gpu_types": list(dict.fromkeys(p.gpu for p in pools)),
            "may_see": wf.may_see_justification(ctx.actor, ctx.tree, team),
            "may_edit": ctx.actor.holds([wf.Role.member, wf.Role.lead], team, ctx.tree) and rnd.state == "open",
            "may_appeal": ctx.actor.holds([wf.Role.lead], team, ctx.tree) and rnd.state == "published",
            "priorities": [p.value for p in Priority], "errors": {}, "values": {}, "form": None}


@router.get("/rounds/{round_id}/teams/{team}")
def team_page(request: Request, round_id: int, team: str, ctx: WebCtx) -> HTMLResponse:
    return render(request, ctx, "team.html", **_team_view(ctx, ops.get_round(ctx.session, round_id), team))


def _field_errors(e: ValidationError | ScenarioError) -> dict[str, str]:
    if isinstance(e, ScenarioError):
        return {str(loc[0]) if loc else "form": msg for loc, msg in e.errors}
    out: dict[str, str] = {}
    for err in e.errors():
        key = str(err["loc"][0]) if err["loc"] else "form"
        out.setdefault(key, err["msg"].removeprefix("Value error, "))
    return out


async def _posted(request: Request) -> dict[str, str]:
    """The form's fields, once its CSRF token is checked."""
    values = {k: str(v) for k, v in (await request.form()).items()}
    request.app.state.web_sessions.check_csrf(request, values.get("csrf"))
    return values


def _team_form_again(request: Request, ctx: Ctx, rnd: m.Round, team: str, form: str, errors: dict[str, str],
                     values: dict[str, str]) -> HTMLResponse:
    """The team page again, with the form's errors next to its fields and what was typed kept."""
    view = _team_view(ctx, rnd, team)
    view.update(errors=errors, values=values, form=form)
    return render(request, ctx, "team.html", 422, **view)


@router.post("/rounds/{round_id}/teams/{team}/requests")
async def submit_request(request: Request, round_id: int, team: str, ctx: WebCtx) -> Response:
    values = await _posted(request)
    rnd = ops.get_round(ctx.session, round_id)
    get_node(ctx.session, team)  # a 404 page for a team that does not exist
    speed = {k.removeprefix("speed_"): v for k, v in values.items() if k.startswith("speed_") and v.strip()}
    raw: dict[str, Any] = {"id": values.get("id", "").strip(), "team": team, "gpus": values.get("gpus") or None,
                           "priority": values.get("priority") or "normal",
                           "justification": values.get("justification") or None}
    if values.get("min"):
        raw["min"] = values["min"]
    if speed:
        raw["speed"] = speed
    errors: dict[str, str] = {}
    try:
        body = RequestModel.model_validate(raw)
    except ValidationError as e:
        errors = _field_errors(e)
    if not errors:
        try:
            ops.submit_request(ctx.session, ctx.actor, rnd, body)
            ctx.session.commit()
            return back(f"/rounds/{round_id}/teams/{team}", msg=f"request {body.id} submitted")
        except ops.DuplicateRequest as e:
            ctx.session.rollback()
            errors = {"id": str(e)}
        except ScenarioError as e:  # a GPU type no pool has, say
            ctx.session.rollback()
            errors = _field_errors(e)
        except (wf.IllegalTransition, wf.Forbidden) as e:
            ctx.session.rollback()
            errors = {"form": str(e)}
    return _team_form_again(request, ctx, rnd, team, "request", errors, values)


@router.post("/rounds/{round_id}/teams/{team}/appeals")
async def file_appeal(request: Request, round_id: int, team: str, ctx: WebCtx) -> Response:
    values = await _posted(request)
    rnd = ops.get_round(ctx.session, round_id)
    get_node(ctx.session, team)
    errors: dict[str, str] = {}
    asked = _whole(values.get("asked", ""), least=1)
    if asked is None:
        errors["asked"] = f"enter the number of GPUs the team asks for (a whole number from 1 to {MAX_GPUS:,})"
    reason = values.get("reason", "").strip()
    if not reason:
        errors["reason"] = "say why: the committee rules on this reason"
    elif len(reason) > TEXT_MAX:
        errors["reason"] = f"at most {TEXT_MAX:,} characters ({len(reason):,} given)"
    try:
        req: m.Request | None = ops.request_in_round(ctx.session, rnd, values.get("request", ""))
    except NotFound:
        req = None
    if req is None or req.team.name != team:
        errors["request"] = "choose one of the team's requests"
    if not errors:
        try:
            assert req is not None and asked is not None
            row = ops.file_appeal(ctx.session, ctx.actor, rnd, req, asked, reason, ctx.now)
            ctx.session.commit()
            return back(f"/rounds/{round_id}/teams/{team}",
                        msg=f"appeal {row.id} filed; it is with the committee of {row.handler}")
        except ScenarioError as e:  # e.g. asking for no more than the request has
            ctx.session.rollback()
            errors = _field_errors(e)
        except (wf.IllegalTransition, wf.Forbidden) as e:
            ctx.session.rollback()
            errors = {"form": str(e)}
    return _team_form_again(request, ctx, rnd, team, "appeal", errors, values)


# --- what-if --------------------------------------------------------------------------------------


@router.get("/rounds/{round_id}/whatif")
def whatif_page(request: Request, round_id: int, ctx: WebCtx) -> HTMLResponse:
    rnd = ops.get_round(ctx.session, round_id)
    if not ctx.actor.is_committee and rnd.state not in ("published", "final"):
        raise wf.Forbidden("what-ifs on an unpublished round are for the committee")
    base = round_scenario(ctx.session, rnd)
    params = request.query_params
    errors: dict[str, str] = {}
    dropped = set(params.getlist("drop"))
    weights: dict[str, float] = {}
    capacity: dict[str, int] = {}
    priorities: dict[str, str] = {}
    for node in base.nodes():
        raw = params.get(f"w_{node.name}")
        if raw not in (None, ""):
            try:
                weights[node.name] = float(raw)
                if not 0 < weights[node.name] <= MAX_WEIGHT:  # also refuses nan and inf
                    raise ValueError
            except ValueError:
                errors[f"w_{node.name}"] = f"a weight is a number above 0, at most {MAX_WEIGHT:g}"
    for pool in base.pools:
        raw = params.get(f"c_{pool.name}")
        if raw not in (None, ""):
            gpus = _whole(raw)
            if gpus is not None:
                capacity[pool.name] = gpus
            else:
                errors[f"c_{pool.name}"] = f"capacity is a whole number of GPUs, from 0 to {MAX_GPUS:,}"
    for req in base.requests:
        raw = params.get(f"p_{req.id}")
        if raw and raw != req.priority.value:
            if raw in {p.value for p in Priority}:
                priorities[req.id] = raw
            else:
                errors[f"p_{req.id}"] = "low, normal, high or critical"
    changed = None
    result: dict[str, Any] = {}
    if (dropped or weights or capacity or priorities) and not errors:
        changed = _apply_whatif(base, dropped, weights, capacity, priorities)
        pins = [p for p in ops.active_pins(ctx.session, rnd) if p.request not in dropped]
        try:
            before = allocate_with_pins(base, ops.active_pins(ctx.session, rnd))
            after = allocate_with_pins(changed, pins)
            changes = [{"kind": c.kind, "name": c.name, "before": c.before, "after": c.after, "delta": c.delta}
                       for c in diff_allocations(before, after)]
            teams = [c for c in changes if c["kind"] == "team"]
            result = {"changes": changes, "chart": charts.whatif_bars(teams)}
        except (InfeasibleGuarantees, ScenarioError) as e:
            errors["form"] = str(e)
    return render(request, ctx, "whatif.html", rnd=rnd, base=base, params=params, dropped=dropped, errors=errors,
                  result=result, priorities=[p.value for p in Priority])


def _apply_whatif(base: Any, dropped: set[str], weights: dict[str, float], capacity: dict[str, int],
                  priorities: dict[str, str]) -> Any:
    def reweigh(node: Any) -> Any:
        return node.model_copy(update={"weight": weights.get(node.name, node.weight),
                                       "children": [reweigh(c) for c in node.children]})

    return base.model_copy(update={
        "org": reweigh(base.org),
        "pools": [p.model_copy(update={"gpus": capacity.get(p.name, p.gpus)}) for p in base.pools],
        "requests": [r.model_copy(update={"priority": Priority(priorities[r.id])} if r.id in priorities else {})
                     for r in base.requests if r.id not in dropped]})


# --- appeals queue and audit ------------------------------------------------------------------------


@router.get("/appeals")
def appeals_page(request: Request, ctx: WebCtx, state: str = "open") -> HTMLResponse:
    if not ctx.actor.is_committee:
        raise wf.Forbidden("the appeals queue is for committees; a team sees its appeals on its team page")
    where = [m.Appeal.state == state] if state in {s.value for s in wf.AppealState} else []
    rows = ctx.session.execute(select(m.Appeal, m.Request.key).join(m.Request, m.Request.id == m.Appeal.request_id)
                               .where(*where).order_by(m.Appeal.deadline)).all()
    mine = [(a, key, ctx.tree.path_to_root(a.handler)) for a, key in rows
            if ctx.actor.holds([wf.Role.committee], a.handler, ctx.tree)]
    return render(request, ctx, "appeals.html", appeals=mine, state=state, now=ctx.now, errors={}, values={})


@router.post("/appeals/{appeal_id}/rule")
async def rule_appeal(request: Request, appeal_id: int, ctx: WebCtx, background: BackgroundTasks) -> Response:
    values = await _posted(request)
    row = ctx.session.get(m.Appeal, appeal_id)
    if row is None:
        raise NotFound(f"no appeal with id {appeal_id}")
    ruling = next((r for r in wf.Ruling if r.value == values.get("ruling", "")), None)
    raw_amount = values.get("amount", "").strip()
    amount = _whole(raw_amount) if raw_amount else None
    reason = values.get("reason", "").strip()
    problem = ("choose grant, partial or reject" if ruling is None
               else f"give the amount as a whole number of GPUs, at most {MAX_GPUS:,}" if raw_amount and amount is None
               else "give the reason for the ruling: the team sees it" if not reason
               else f"the reason is at most {TEXT_MAX:,} characters ({len(reason):,} given)" if len(reason) > TEXT_MAX
               else None)
    if problem is not None:
        return back("/appeals", error=f"appeal {appeal_id}: {problem}")
    assert ruling is not None
    try:
        actions.rule_appeal(ctx, request.app, background, row, ruling, amount, reason)
    except (ValueError, wf.IllegalTransition, wf.Forbidden) as e:  # ValueError: OverrideError, ScenarioError
        ctx.session.rollback()
        return back("/appeals", error=f"appeal {appeal_id}: {e}")
    return back("/appeals", msg=f"appeal {appeal_id}: {row.state}")


@router.get("/audit")
def audit_page(request: Request, ctx: WebCtx, entity: str = "", actor: str = "", action: str = "",
               since: str = "") -> HTMLResponse:
    wf.check_read_audit(ctx.actor)
    where: list[Any] = []
    errors: dict[str, str] = {}
    for col, value in ((m.AuditEntry.entity, entity), (m.AuditEntry.actor, actor), (m.AuditEntry.action, action)):
        if value:
            where.append(col == value)
    if since:
        try:
            when = dt.date.fromisoformat(since)
            where.append(m.AuditEntry.at >= dt.datetime.combine(when, dt.time(), dt.timezone.utc))
        except ValueError:
            errors["since"] = "a date like 2026-11-01"
    rows = list(ctx.session.scalars(select(m.AuditEntry).where(*where).order_by(m.AuditEntry.id.desc()).limit(500)))
    return render(request, ctx, "audit.html", rows=rows, errors=errors,
                  values={"entity": entity, "actor": actor, "action": action, "since": since})
