"""The pages: sign-in, round overview, team page, what-if, appeals queue, audit log.

Server-rendered (Jinja2) on the same use cases as the API: every read and every change is a
function of `fairshare.service.ops` (which asks `fairshare.workflow` who may see and do what, and
commits or rolls back); a page parses its form, calls the ops and renders.  Forms post back, show
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
from sqlalchemy.orm import Session
from starlette.datastructures import QueryParams

from fairshare import workflow as wf
from fairshare.engine import InfeasibleGuarantees, ReasonCode
from fairshare.errors import Conflict
from fairshare.scenario import MAX_GPUS, MAX_WEIGHT, Priority, Scenario, ScenarioError
from fairshare.scenario import Request as RequestModel
from fairshare.service.api.deps import Ctx, get_session
from fairshare.service.api.push import push_later
from fairshare.service.api.schemas import TEXT_MAX
from fairshare.service.ops import appeals, audit, lab, overrides, people, requests, rounds, views, whatif
from fairshare.service.ops.levers import SECONDS, request_levers
from fairshare.service.web import charts
from fairshare.service.web.auth import COOKIE, MAX_AGE

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
templates.env.filters["tojson_compact"] = lambda v: json.dumps(v, separators=(",", ":"), default=str)
LOGIN_CSRF = "fairshare_login_csrf"


def web_ctx(request: Request, session: Annotated[Session, Depends(get_session)]) -> Ctx:
    return Ctx(session, request.app.state.web_sessions.actor(session, request), request.app.state.clock())


WebCtx = Annotated[Ctx, Depends(web_ctx)]


def render(request: Request, ctx: Ctx | None, name: str, status: int = 200, **data: Any) -> HTMLResponse:
    extra: dict[str, Any] = {}
    if ctx is not None:
        extra = {
            "me": ctx.actor,
            "csrf": request.app.state.web_sessions.csrf(request),
            "is_committee": ctx.actor.is_committee,
            "my_teams": _my_teams(ctx),
        }
    return templates.TemplateResponse(
        request,
        name,
        {"msg": request.query_params.get("msg"), "error": request.query_params.get("error"), **extra, **data},
        status_code=status,
    )


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
def login(
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    token: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    if not csrf or csrf != request.cookies.get(LOGIN_CSRF):
        return render(
            request,
            None,
            "login.html",
            403,
            next=next,
            login_csrf=request.cookies.get(LOGIN_CSRF, ""),
            errors={"form": "this sign-in form is stale; reload the page"},
            values={"token": token},
        )
    digest = people.sign_in(session, token.strip()) if token.strip() else None
    if digest is None:
        error = "enter your API token" if not token.strip() else "unknown or revoked token; ask an admin for one"
        return render(
            request,
            None,
            "login.html",
            401,
            next=next,
            login_csrf=csrf,
            errors={"token": error},
            values={"token": token},
        )
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    resp = RedirectResponse(target, status_code=303)
    sessions = request.app.state.web_sessions
    resp.set_cookie(
        COOKIE, sessions.cookie_for(digest), max_age=MAX_AGE, httponly=True, samesite="strict", secure=sessions.secure
    )
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
    return render(request, ctx, "home.html", rounds=rounds.list_rounds(ctx.session)[0])


@router.get("/rounds/{round_id}")
def round_page(request: Request, round_id: int, ctx: WebCtx) -> HTMLResponse:
    v = views.round_view(ctx.session, ctx.actor, round_id)
    view: dict[str, Any] = {
        "rnd": v.rnd,
        "n_requests": v.n_requests,
        "data": v.data,
        "may_run": v.may_run,
        "steps": v.steps,
        "window_ends": v.window_ends,
        "date": v.date,
        "capacity": v.capacity,
        "may_copy": v.may_copy,
    }
    if v.data is not None:
        view["overrides"] = overrides.list_overrides(ctx.session, ctx.actor, round_id)
        nodes = v.data.nodes
        teams = [n for n in nodes if n["reasons"] and not _has_children(nodes, n["node"])]
        least = sorted(teams, key=lambda n: (n["total"] / n["demand"]) if n["demand"] else 1.0)[:5]
        below = [r for r in v.data.results if r.reason_code == ReasonCode.below_min]
        view.update(
            pools=v.pools,
            least=least,
            below=below,
            fairness=v.data.run.fairness,
            capacity_chart=charts.capacity_demand(v.pools),
            org_chart=charts.org_sunburst(nodes),
        )
    return render(request, ctx, "round.html", **view)


def _has_children(nodes: list[dict[str, Any]], name: str) -> bool:
    return any(n["parent"] == name for n in nodes)


@router.post("/rounds/{round_id}/step")
def round_step(
    request: Request,
    round_id: int,
    ctx: WebCtx,
    background: BackgroundTasks,
    step: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    request.app.state.web_sessions.check_csrf(request, csrf)
    rnd = rounds.get_round(ctx.session, round_id)
    try:
        rounds.step_round(
            ctx.session,
            ctx.actor,
            rnd,
            step,
            ctx.now,
            solve_timer=request.app.state.metrics.solve.observe,
            on_published=push_later(request, background, ctx.actor.name),
        )
    except (wf.IllegalTransition, wf.Forbidden, InfeasibleGuarantees, ScenarioError) as e:
        return back(f"/rounds/{round_id}", error=str(e))
    return back(f"/rounds/{round_id}", msg=f"round {step}: now {rnd.state}")


@router.post("/rounds/{round_id}/copy-forward")
def copy_forward(
    request: Request,
    round_id: int,
    ctx: WebCtx,
    team: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """The previous round's requests into this open round: a team's (from its page) or everyone's (the round's)."""
    request.app.state.web_sessions.check_csrf(request, csrf)
    rounds.get_round(ctx.session, round_id)
    page = f"/rounds/{round_id}/teams/{quote(team)}" if team else f"/rounds/{round_id}"
    try:
        done = requests.copy_forward(ctx.session, ctx.actor, round_id, team or None)
    except (wf.IllegalTransition, wf.Forbidden) as e:
        return back(page, error=str(e))
    skipped = "".join(f"; skipped {k} ({t}): {why}" for k, t, why in done.skipped)
    return back(page, msg=f"copied {len(done.copied)} request(s) from round {done.source.name}{skipped}")


# --- team page ------------------------------------------------------------------------------------


def _team_view(ctx: Ctx, round_id: int, team: str) -> dict[str, Any]:
    v = views.team_view(ctx.session, ctx.actor, round_id, team, ctx.now)
    return {
        **vars(v),
        "history_chart": charts.team_history(v.history) if v.history else None,
        "priorities": [p.value for p in Priority],
        "errors": {},
        "values": {},
        "form": None,
    }


@router.get("/rounds/{round_id}/teams/{team}")
def team_page(request: Request, round_id: int, team: str, ctx: WebCtx) -> HTMLResponse:
    return render(request, ctx, "team.html", **_team_view(ctx, round_id, team))


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


def _team_form_again(
    request: Request, ctx: Ctx, round_id: int, team: str, form: str, errors: dict[str, str], values: dict[str, str]
) -> HTMLResponse:
    """The team page again, with the form's errors next to its fields and what was typed kept."""
    view = _team_view(ctx, round_id, team)
    view.update(errors=errors, values=values, form=form)
    return render(request, ctx, "team.html", 422, **view)


@router.post("/rounds/{round_id}/teams/{team}/requests")
async def submit_request(request: Request, round_id: int, team: str, ctx: WebCtx) -> Response:
    values = await _posted(request)
    rounds.get_round(ctx.session, round_id)
    lab.node(ctx.session, team)  # a 404 page for a team that does not exist
    speed = {k.removeprefix("speed_"): v for k, v in values.items() if k.startswith("speed_") and v.strip()}
    raw: dict[str, Any] = {
        "id": values.get("id", "").strip(),
        "team": team,
        "gpus": values.get("gpus") or None,
        "priority": values.get("priority") or "normal",
        "justification": values.get("justification") or None,
    }
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
            requests.submit_request(ctx.session, ctx.actor, round_id, body)
            return back(f"/rounds/{round_id}/teams/{team}", msg=f"request {body.id} submitted")
        except requests.DuplicateRequest as e:
            errors = {"id": str(e)}
        except ScenarioError as e:  # a GPU type no pool has, say
            errors = _field_errors(e)
        except (wf.IllegalTransition, wf.Forbidden) as e:
            errors = {"form": str(e)}
    return _team_form_again(request, ctx, round_id, team, "request", errors, values)


@router.post("/rounds/{round_id}/teams/{team}/appeals")
async def file_appeal(request: Request, round_id: int, team: str, ctx: WebCtx) -> Response:
    values = await _posted(request)
    rounds.get_round(ctx.session, round_id)
    lab.node(ctx.session, team)
    errors: dict[str, str] = {}
    asked = _whole(values.get("asked", ""), least=1)
    if asked is None:
        errors["asked"] = f"enter the number of GPUs the team asks for (a whole number from 1 to {MAX_GPUS:,})"
    reason = values.get("reason", "").strip()
    if not reason:
        errors["reason"] = "say why: the committee rules on this reason"
    elif len(reason) > TEXT_MAX:
        errors["reason"] = f"at most {TEXT_MAX:,} characters ({len(reason):,} given)"
    key = values.get("request", "")
    if not views.team_request(ctx.session, round_id, team, key):
        errors["request"] = "choose one of the team's requests"
    if not errors:
        try:
            assert asked is not None
            row = appeals.file_appeal(ctx.session, ctx.actor, round_id, key, asked, reason, ctx.now)
            return back(
                f"/rounds/{round_id}/teams/{team}",
                msg=f"appeal {row.id} filed; it is with the committee of {row.handler}",
            )
        except ScenarioError as e:  # e.g. asking for no more than the request has
            errors = _field_errors(e)
        except (wf.IllegalTransition, wf.Forbidden) as e:
            errors = {"form": str(e)}
    return _team_form_again(request, ctx, round_id, team, "appeal", errors, values)


# --- what-if --------------------------------------------------------------------------------------


@router.get("/rounds/{round_id}/whatif")
def whatif_page(request: Request, round_id: int, ctx: WebCtx) -> HTMLResponse:
    base = whatif.start(ctx.session, ctx.actor, round_id)
    params = request.query_params
    edits, errors = _whatif_edits(base.scenario, params)
    result: dict[str, Any] = {}
    if edits and not errors:
        try:
            changes = [
                {"kind": c.kind, "name": c.name, "before": c.before, "after": c.after, "delta": c.delta}
                for c in whatif.compare(base, edits)
            ]
            teams = [c for c in changes if c["kind"] == "team"]
            result = {"changes": changes, "chart": charts.whatif_bars(teams)}
        except (InfeasibleGuarantees, ScenarioError) as e:
            errors["form"] = str(e)
    return render(
        request,
        ctx,
        "whatif.html",
        rnd=base.round,
        base=base.scenario,
        params=params,
        dropped=edits.drop,
        errors=errors,
        result=result,
        priorities=[p.value for p in Priority],
    )


def _whatif_edits(base: Scenario, params: QueryParams) -> tuple[whatif.Edits, dict[str, str]]:
    """The what-if form's edits, and an error per field that is not a valid value."""
    errors: dict[str, str] = {}
    weights: dict[str, float] = {}
    capacity: dict[str, int] = {}
    priorities: dict[str, Priority] = {}
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
                priorities[req.id] = Priority(raw)
            else:
                errors[f"p_{req.id}"] = "low, normal, high or critical"
    dropped = frozenset(params.getlist("drop")) & {r.id for r in base.requests}
    return whatif.Edits(dropped, weights, capacity, priorities), errors


# --- appeals queue and audit ------------------------------------------------------------------------


@router.get("/appeals")
def appeals_page(request: Request, ctx: WebCtx, state: str = "open") -> HTMLResponse:
    mine = appeals.queue(ctx.session, ctx.actor, state)
    return render(request, ctx, "appeals.html", appeals=mine, state=state, now=ctx.now, errors={}, values={})


@router.post("/appeals/{appeal_id}/rule")
async def rule_appeal(request: Request, appeal_id: int, ctx: WebCtx, background: BackgroundTasks) -> Response:
    values = await _posted(request)
    appeals.find_appeal(ctx.session, appeal_id)  # a 404 page for an appeal that does not exist
    ruling = next((r for r in wf.Ruling if r.value == values.get("ruling", "")), None)
    raw_amount = values.get("amount", "").strip()
    amount = _whole(raw_amount) if raw_amount else None
    reason = values.get("reason", "").strip()
    problem = (
        "choose grant, partial or reject"
        if ruling is None
        else f"give the amount as a whole number of GPUs, at most {MAX_GPUS:,}"
        if raw_amount and amount is None
        else "give the reason for the ruling: the team sees it"
        if not reason
        else f"the reason is at most {TEXT_MAX:,} characters ({len(reason):,} given)"
        if len(reason) > TEXT_MAX
        else None
    )
    if problem is not None:
        return back("/appeals", error=f"appeal {appeal_id}: {problem}")
    assert ruling is not None
    if values.get("confirm") != "yes":  # first the preview: who would gain and who would lose, then confirm
        try:
            preview = appeals.preview_ruling(ctx.session, ctx.actor, appeal_id, ruling, amount, reason)
        except wf.Forbidden as e:
            return back("/appeals", error=f"appeal {appeal_id}: {e}")
        mine = appeals.queue(ctx.session, ctx.actor, "open")
        confirm = {"id": appeal_id, "ruling": ruling.value, "amount": raw_amount, "reason": reason, "p": preview}
        return render(
            request, ctx, "appeals.html", appeals=mine, state="open", now=ctx.now, errors={}, values={}, confirm=confirm
        )
    try:
        row, _ = appeals.rule_appeal(
            ctx.session,
            ctx.actor,
            appeal_id,
            ruling,
            amount,
            reason,
            ctx.now,
            on_published=push_later(request, background, ctx.actor.name),
        )
    except (ValueError, wf.IllegalTransition, wf.Forbidden, Conflict) as e:  # ValueError: OverrideError, ScenarioError
        return back("/appeals", error=f"appeal {appeal_id}: {e}")
    return back("/appeals", msg=f"appeal {appeal_id}: {row.state}")


@router.get("/health")
def health_page(request: Request, ctx: WebCtx, rounds: int = 12) -> HTMLResponse:
    """The lab-wide heat map of share_of_fair, nodes x rounds (docs/health.md): ops.health, as GET /health."""
    from fairshare.engine.health import HealthRules
    from fairshare.errors import UserError
    from fairshare.service.ops import health

    below = HealthRules().starved_below
    try:
        h = health.lab_health(ctx.session, ctx.actor, ctx.now, last=rounds)
    except UserError as e:
        return render(request, ctx, "health.html", h=None, error=str(e), starved_below=below)
    return render(request, ctx, "health.html", h=h, error=None, starved_below=below)


@router.get("/audit")
def audit_page(
    request: Request, ctx: WebCtx, entity: str = "", actor: str = "", action: str = "", since: str = ""
) -> HTMLResponse:
    errors: dict[str, str] = {}
    start = None
    if since:
        try:
            start = dt.datetime.combine(dt.date.fromisoformat(since), dt.time(), dt.UTC)
        except ValueError:
            errors["since"] = "a date like 2026-11-01"
    rows = audit.newest(
        ctx.session,
        ctx.actor,
        audit.Filter(entity=entity or None, actor=actor or None, action=action or None, since=start),
    )
    return render(
        request,
        ctx,
        "audit.html",
        rows=rows,
        errors=errors,
        values={"entity": entity, "actor": actor, "action": action, "since": since},
    )


# --- a request's levers ---------------------------------------------------------------------------


@router.get("/rounds/{round_id}/requests/{key}/levers")
def levers_page(request: Request, round_id: int, key: str, ctx: WebCtx) -> HTMLResponse:
    """What would give a request more: the same search as GET /api/v1/rounds/{id}/requests/{key}/levers."""
    scenario, found = request_levers(ctx.session, ctx.actor, round_id, key)
    req = next(r for r in scenario.requests if r.id == key)
    return render(
        request,
        ctx,
        "levers.html",
        rnd=rounds.get_round(ctx.session, round_id),
        req=req,
        found=found,
        seconds=SECONDS,
    )
