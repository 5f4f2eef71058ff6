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
from fairshare.engine.health import HealthRules
from fairshare.errors import Conflict, FairshareError
from fairshare.scenario import MAX_GPUS, MAX_WEIGHT, Pool, Priority, Scenario, ScenarioError
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


def whole_number(raw: str, least: int = 0, most: int = MAX_GPUS) -> int | None:
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
    return render(
        request,
        ctx,
        "home.html",
        rounds=rounds.list_rounds(ctx.session)[0],
        setup=views.setup_view(ctx.session, ctx.actor),
        errors={},
        values={},
    )


def round_context(ctx: Ctx, round_id: int) -> dict[str, Any]:
    """Everything the round page shows, and the steps, forms and buttons the caller may use there."""
    v = views.round_view(ctx.session, ctx.actor, round_id)
    steps = list(v.steps)
    blocked = None
    if "finalize" in steps:  # only legal steps are offered: finalize once the workflow would accept it
        blocked = views.finalize_blocker(ctx.session, v.rnd, ctx.now)
        if blocked:
            steps.remove("finalize")
    view: dict[str, Any] = {
        "rnd": v.rnd,
        "n_requests": v.n_requests,
        "data": v.data,
        "may_run": v.may_run,
        "steps": steps,
        "finalize_blocked": blocked,
        "window_ends": v.window_ends,
        "date": v.date,
        "capacity": v.capacity,
        "may_copy": v.may_copy,
        "may_override": v.may_run and v.rnd.state == wf.RoundState.proposed.value,
        "override_preview": None,
        "removal_preview": None,
        "errors": {},
        "values": {},
        "overrides": [],
    }
    view["streaks"] = _streaks(ctx, v.rnd) if view["may_override"] else None
    view["starved_pct"] = round(100 * HealthRules().starved_below)
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
            request_keys=sorted(r.key for r in v.data.results),
            pool_names=[p["name"] for p in v.pools],
        )
    return view


@router.get("/rounds/{round_id}")
def round_page(request: Request, round_id: int, ctx: WebCtx) -> HTMLResponse:
    view = round_context(ctx, round_id)
    view["values"] = {k: request.query_params.get(k, "") for k in ("request", "total", "reason")}
    return render(request, ctx, "round.html", **view)


def _streaks(ctx: Ctx, rnd: Any) -> list[views.StreakGrowth] | None:
    """The teams whose starved streak grows if the proposal is published (None: it cannot be said now,
    e.g. a past round's world no longer loads; publish's confirmation says why)."""
    try:
        return views.streaks_if_published(ctx.session, ctx.actor, rnd, ctx.now)
    except FairshareError:
        return None


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
    confirm: Annotated[str, Form()] = "",
) -> Response:
    request.app.state.web_sessions.check_csrf(request, csrf)
    rnd = rounds.get_round(ctx.session, round_id)
    if step == "publish" and confirm != "yes":  # first say what publication does, and whose streak grows
        grows = views.streaks_if_published(ctx.session, ctx.actor, rnd, ctx.now)
        return render(
            request,
            ctx,
            "publish.html",
            rnd=rnd,
            grows=grows,
            sync=[name for name, _ in request.app.state.sync_hooks or []],
        )
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
    history = views.team_health(ctx.session, ctx.actor, team, ctx.now)
    return {
        **vars(v),
        "history": history,
        "history_chart": charts.team_history(history) if history else None,
        "sites": list(dict.fromkeys(p.site for p in lab.pools(ctx.session))),
        "editing": None,
        "priorities": [p.value for p in Priority],
        "errors": {},
        "values": {},
        "form": None,
    }


@router.get("/rounds/{round_id}/teams/{team}")
def team_page(request: Request, round_id: int, team: str, ctx: WebCtx, edit: str = "") -> HTMLResponse:
    view = _team_view(ctx, round_id, team)
    row = views.request_row(ctx.session, round_id, team, edit) if edit and view["may_edit"] else None
    if row is not None:  # the request form, filled with the request's current version
        view.update(editing=row, form="request", values=_request_values(row))
    return render(request, ctx, "team.html", **view)


def _request_values(row: Any) -> dict[str, str]:
    """A stored request as the request form's fields."""
    values = {
        "id": row.key,
        "gpus": str(row.gpus),
        "min": str(row.min or ""),
        "priority": row.priority,
        "launch": row.launch.isoformat() if row.launch else "",
        "weight": f"{row.weight:g}",
        "justification": row.justification or "",
        "version": str(row.version),
    }
    values.update({f"speed_{k}": f"{v:g}" for k, v in (row.speed or {}).items()})
    values.update({f"site_{k}": "on" for k in row.sites or []})
    return values


def field_errors(e: ValidationError | ScenarioError) -> dict[str, str]:
    if isinstance(e, ScenarioError):
        return {str(loc[0]) if loc else "form": msg for loc, msg in e.errors}
    out: dict[str, str] = {}
    for err in e.errors():
        key = str(err["loc"][0]) if err["loc"] else "form"
        out.setdefault(key, err["msg"].removeprefix("Value error, "))
    return out


async def posted(request: Request) -> dict[str, str]:
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


def _request_body(team: str, values: dict[str, str], sites: list[str]) -> tuple[RequestModel | None, dict[str, str]]:
    """The request form's fields as a scenario request, or an error per field."""
    speed = {k.removeprefix("speed_"): v for k, v in values.items() if k.startswith("speed_") and v.strip()}
    raw: dict[str, Any] = {
        "id": values.get("id", "").strip(),
        "team": team,
        "gpus": values.get("gpus") or None,
        "priority": values.get("priority") or "normal",
        "justification": values.get("justification") or None,
    }
    for name in ("min", "launch", "weight"):
        if values.get(name, "").strip():
            raw[name] = values[name].strip()
    if speed:
        raw["speed"] = speed
    chosen = [s for s in sites if values.get(f"site_{s}")]
    if chosen and len(chosen) < len(sites):  # every site ticked (or none) = may run anywhere
        raw["sites"] = chosen
    try:
        return RequestModel.model_validate(raw), {}
    except ValidationError as e:
        return None, field_errors(e)


@router.post("/rounds/{round_id}/teams/{team}/requests")
async def submit_request(request: Request, round_id: int, team: str, ctx: WebCtx) -> Response:
    values = await posted(request)
    rounds.get_round(ctx.session, round_id)
    lab.node(ctx.session, team)  # a 404 page for a team that does not exist
    body, errors = _request_body(team, values, list(dict.fromkeys(p.site for p in lab.pools(ctx.session))))
    if body is not None:
        try:
            requests.submit_request(ctx.session, ctx.actor, round_id, body)
            return back(f"/rounds/{round_id}/teams/{team}", msg=f"request {body.id} submitted")
        except requests.DuplicateRequest as e:
            errors = {"id": str(e)}
        except ScenarioError as e:  # a GPU type no pool has, say
            errors = field_errors(e)
        except (wf.IllegalTransition, wf.Forbidden) as e:
            errors = {"form": str(e)}
    return _team_form_again(request, ctx, round_id, team, "request", errors, values)


@router.post("/rounds/{round_id}/teams/{team}/requests/{key}/edit")
async def edit_request(request: Request, round_id: int, team: str, key: str, ctx: WebCtx) -> Response:
    """A new version of an open request, from the version the form was filled with (another: a conflict)."""
    values = await posted(request)
    row = views.request_row(ctx.session, round_id, team, key)
    if row is None:
        return back(f"/rounds/{round_id}/teams/{team}", error=f"{team} has no live request {key!r} in this round")
    values["id"] = key
    body, errors = _request_body(team, values, list(dict.fromkeys(p.site for p in lab.pools(ctx.session))))
    version = whole_number(values.get("version", ""), least=1)
    if body is not None and version is None:
        errors = {"form": "this form has no version of the request; reload the page"}
    if body is not None and version is not None:
        try:
            done = requests.update_request(ctx.session, ctx.actor, row.id, body, version, ctx.now)
            return back(f"/rounds/{round_id}/teams/{team}", msg=f"request {key} saved as version {done.version}")
        except ScenarioError as e:
            errors = field_errors(e)
        except (wf.IllegalTransition, wf.Forbidden) as e:
            errors = {"form": str(e)}
    view = _team_view(ctx, round_id, team)
    view.update(errors=errors, values=values, form="request", editing=row)
    return render(request, ctx, "team.html", 422, **view)


@router.post("/rounds/{round_id}/teams/{team}/requests/{key}/withdraw")
async def withdraw_request(request: Request, round_id: int, team: str, key: str, ctx: WebCtx) -> Response:
    values = await posted(request)
    page = f"/rounds/{round_id}/teams/{team}"
    row = views.request_row(ctx.session, round_id, team, key)
    version = whole_number(values.get("version", ""), least=1)
    if row is None or version is None:
        return back(page, error=f"{team} has no live request {key!r} in this round")
    try:
        requests.withdraw_request(ctx.session, ctx.actor, row.id, version, ctx.now)
    except (wf.IllegalTransition, wf.Forbidden) as e:
        return back(page, error=str(e))
    return back(page, msg=f"request {key} withdrawn")


@router.post("/rounds/{round_id}/teams/{team}/appeals")
async def file_appeal(request: Request, round_id: int, team: str, ctx: WebCtx) -> Response:
    values = await posted(request)
    rounds.get_round(ctx.session, round_id)
    lab.node(ctx.session, team)
    errors: dict[str, str] = {}
    asked = whole_number(values.get("asked", ""), least=1)
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
            errors = field_errors(e)
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
            preview = whatif.preview(base, edits)  # the same gains/losses table as the previews
            teams = [{"name": c.name, "delta": c.delta} for c in preview.changes if c.kind == "team"]
            result = {"preview": preview, "chart": charts.whatif_bars(teams)}
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
        gpu_types=list(dict.fromkeys(p.gpu for p in base.scenario.pools)),
        sites=list(dict.fromkeys(p.site for p in base.scenario.pools)),
        may_override=ctx.actor.is_committee and base.round.state == wf.RoundState.proposed.value,
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
            gpus = whole_number(raw)
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
    minimums: dict[str, int | None] = {}
    for req in base.requests:
        raw = (params.get(f"m_{req.id}") or "").strip()
        if raw and raw != str(req.min or ""):
            if raw == "0":
                minimums[req.id] = None
            elif (least := whole_number(raw, least=1, most=req.gpus)) is not None:
                minimums[req.id] = least
            else:
                errors[f"m_{req.id}"] = f"a minimum is a whole number of GPUs from 1 to {req.gpus:,} (0: no minimum)"
    new_pools = _new_pool(base, params, errors)
    guarantees, limits = _node_counts(base, params, errors)
    dropped = frozenset(params.getlist("drop")) & {r.id for r in base.requests}
    edits = whatif.Edits(dropped, weights, capacity, priorities, new_pools, guarantees, limits, minimums)
    return edits, errors


def _new_pool(base: Scenario, params: QueryParams, errors: dict[str, str]) -> list[Pool]:
    """The what-if's added pool (a GPU type, a site, a number of GPUs), if the form names one."""
    gpu, site, raw = (params.get(k, "").strip() for k in ("np_gpu", "np_site", "np_gpus"))
    if not (gpu or site or raw):
        return []
    gpus = whole_number(raw, least=1)
    if gpus is None:
        errors["np_gpus"] = f"a new pool has a whole number of GPUs, from 1 to {MAX_GPUS:,}"
    if not gpu:
        errors["np_gpu"] = "choose the new pool's GPU type"
    if not site:
        errors["np_site"] = "name the new pool's site (an existing one, or a new site)"
    if gpus is None or not gpu or not site:
        return []
    taken = {p.name for p in base.pools}
    name = f"{gpu.lower()}-{site.lower()}-new"
    while name in taken:
        name += "-2"
    try:
        return [Pool(name=name, gpu=gpu, site=site, gpus=gpus)]
    except ValidationError as e:
        for err in e.errors():
            field = {"gpu": "np_gpu", "site": "np_site"}.get(str(err["loc"][0]) if err["loc"] else "", "np_gpus")
            errors[field] = err["msg"].removeprefix("Value error, ")
        return []


def _node_counts(
    base: Scenario, params: QueryParams, errors: dict[str, str]
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """The what-if's new guarantee and limit of one org node for one GPU type (empty: unchanged)."""
    node, gpu = params.get("n_node", "").strip(), params.get("n_gpu", "").strip()
    found: list[dict[str, dict[str, int]]] = [{}, {}]
    for i, field in enumerate(("n_guarantee", "n_limit")):
        raw = params.get(field, "").strip()
        if not raw:
            continue
        value = whole_number(raw)
        if value is None:
            errors[field] = f"a whole number of GPUs, from 0 to {MAX_GPUS:,} (0 removes it)"
        elif node not in {n.name for n in base.nodes()}:
            errors["n_node"] = "choose the org node to change"
        elif gpu not in {p.gpu for p in base.pools}:
            errors["n_gpu"] = "choose the GPU type the guarantee or limit is for"
        else:
            found[i] = {node: {gpu: value}}
    return found[0], found[1]


def _waited(since: dt.datetime, now: dt.datetime) -> str:
    """How long since `since`, in days and hours ("2 days 3 hours", "under an hour")."""
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    hours = max(int((now - since).total_seconds() // 3600), 0)
    days, hours = divmod(hours, 24)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    parts += [f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []
    return " ".join(parts) or "under an hour"


# --- appeals queue and audit ------------------------------------------------------------------------


@router.get("/appeals")
def appeals_page(request: Request, ctx: WebCtx, state: str = "open", round: str = "") -> HTMLResponse:
    return render(request, ctx, "appeals.html", **_queue(ctx, state, round))


def _queue(ctx: Ctx, state: str, round_filter: str = "") -> dict[str, Any]:
    """The appeals queue filtered by state and round, each appeal with its round and how long it has waited."""
    mine = appeals.queue(ctx.session, ctx.actor, state)
    names = {r.id: r.name for r in rounds.list_rounds(ctx.session)[0]}
    shown = [(a, k, p) for a, k, p in mine if not round_filter or str(a.round_id) == round_filter]
    return {
        "appeals": shown,
        "state": state,
        "round_filter": round_filter,
        "round_names": names,
        "appeal_rounds": sorted({a.round_id for a, _, _ in mine}),
        "waited": {a.id: _waited(a.created_at, ctx.now) for a, _, _ in shown},
        "now": ctx.now,
        "errors": {},
        "values": {},
    }


def _ruling_choices(ctx: Ctx, appeal_id: int, amount: int | None, reason: str) -> dict[str, dict[str, Any]]:
    """The preview of each ruling (ops' own, as the API's dry_run): grant the amount typed or else the amount
    asked, partial the amount typed (none without one), reject; so the chair compares them before choosing."""
    row, _ = appeals.find_appeal(ctx.session, appeal_id)
    choices: dict[str, dict[str, Any]] = {}
    for ruling in wf.Ruling:
        gpus = row.asked if ruling is wf.Ruling.grant and amount is None else amount
        if ruling is wf.Ruling.reject:
            gpus = row.current
        elif gpus is None:  # partial without an amount: nothing to preview yet
            choices[ruling.value] = {"gpus": None, "p": None}
            continue
        preview = appeals.preview_ruling(ctx.session, ctx.actor, appeal_id, ruling, amount, reason or "(preview)")
        choices[ruling.value] = {"gpus": gpus, "p": preview}
    return choices


@router.post("/appeals/{appeal_id}/rule")
async def rule_appeal(request: Request, appeal_id: int, ctx: WebCtx, background: BackgroundTasks) -> Response:
    values = await posted(request)
    appeals.find_appeal(ctx.session, appeal_id)  # a 404 page for an appeal that does not exist
    ruling = next((r for r in wf.Ruling if r.value == values.get("ruling", "")), None)
    raw_amount = values.get("amount", "").strip()
    amount = whole_number(raw_amount) if raw_amount else None
    reason = values.get("reason", "").strip()
    confirming = values.get("confirm") == "yes"
    problem = (
        f"give the amount as a whole number of GPUs, at most {MAX_GPUS:,}"
        if raw_amount and amount is None
        else "choose a ruling: grant, partial or reject (there is no default)"
        if ruling is None and confirming
        else "give the reason for the ruling: the team sees it"
        if not reason and confirming
        else f"the reason is at most {TEXT_MAX:,} characters ({len(reason):,} given)"
        if len(reason) > TEXT_MAX
        else None
    )
    if problem is not None:
        return back("/appeals", error=f"appeal {appeal_id}: {problem}")
    if not confirming:  # first the preview of each choice: who would gain and who would lose, then confirm one
        try:
            choices = _ruling_choices(ctx, appeal_id, amount, reason)
        except wf.Forbidden as e:
            return back("/appeals", error=f"appeal {appeal_id}: {e}")
        shown = choices[ruling.value]["p"] if ruling is not None else None
        chosen = ruling.value if ruling is not None and shown is not None and not shown.refused else ""
        confirm = {"id": appeal_id, "ruling": chosen, "amount": raw_amount, "reason": reason, "choices": choices}
        return render(request, ctx, "appeals.html", **_queue(ctx, "open"), confirm=confirm)
    assert ruling is not None
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
        diffs={e.id: audit_diff(e.before, e.after) for e in rows},
        errors=errors,
        values={"entity": entity, "actor": actor, "action": action, "since": since},
    )


def audit_diff(before: Any, after: Any, prefix: str = "") -> list[tuple[str, str | None, str | None]]:
    """An audit entry's change as (field, before, after), field by field (nested fields dotted), the
    fields that did not change left out; a value that is not an object is one field, `value`."""
    if not isinstance(before, dict) and not isinstance(after, dict):
        if before == after:
            return []
        return [(prefix or "value", _shown(before), _shown(after))]
    b = before if isinstance(before, dict) else {}
    a = after if isinstance(after, dict) else {}
    out: list[tuple[str, str | None, str | None]] = []
    for key in [*b, *(k for k in a if k not in b)]:
        name = f"{prefix}.{key}" if prefix else str(key)
        old, new = b.get(key), a.get(key)
        if isinstance(old, dict) or isinstance(new, dict):
            out += audit_diff(old, new, name)
        elif old != new:
            out.append((name, _shown(old), _shown(new)))
    return out


def _shown(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "), default=str)


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
