"""The committee's forms: create a round, archive a team, set and remove overrides.

Like every page, a form here parses its fields, calls one use case of `fairshare.service.ops` and
renders or redirects; an override and its removal are first shown as a preview (who gains and who
loses) and made only on "Confirm".  A refused action changes nothing and says why on the page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from fairshare.errors import UserError
from fairshare.service.api.schemas import TEXT_MAX, RoundIn
from fairshare.service.ops import lab, overrides, rounds, views
from fairshare.service.web.pages import WebCtx, back, field_errors, posted, render, round_context, whole_number

router = APIRouter(include_in_schema=False)


def _home_again(request: Request, ctx: Any, errors: dict[str, str], values: dict[str, str]) -> HTMLResponse:
    return render(
        request,
        ctx,
        "home.html",
        422,
        rounds=rounds.list_rounds(ctx.session)[0],
        setup=views.setup_view(ctx.session, ctx.actor),
        errors=errors,
        values=values,
    )


@router.post("/rounds")
async def create_round(request: Request, ctx: WebCtx) -> Response:
    """A draft round with its own date and appeal windows (the root's committee), as POST /api/v1/rounds."""
    values = await posted(request)
    raw: dict[str, Any] = {"name": values.get("name", "").strip()}
    if values.get("date", "").strip():
        raw["date"] = values["date"].strip()
    for field in ("appeal_window_hours", "appeal_response_hours"):
        if values.get(field, "").strip():
            raw[field] = values[field].strip()
    try:
        body = RoundIn.model_validate(raw)
    except ValidationError as e:
        return _home_again(request, ctx, field_errors(e), values)
    try:
        rnd = rounds.create_round(
            ctx.session,
            ctx.actor,
            body.name,
            None,
            body.appeal_window_hours,
            body.appeal_response_hours,
            body.model_dump(mode="json"),
            date=body.date,
        )
    except UserError as e:  # a name in use, not the root's committee
        return _home_again(request, ctx, {"name": str(e)}, values)
    return back(f"/rounds/{rnd.id}", msg=f"round {rnd.name} created (draft); open it to take requests")


@router.post("/nodes/archive")
async def archive_node(request: Request, ctx: WebCtx) -> Response:
    """Archive a team that leaves (admins), as DELETE /api/v1/nodes/{name}; refused while it has live requests."""
    values = await posted(request)
    name = values.get("node", "").strip()
    if not name:
        return _home_again(request, ctx, {"node": "choose the team to archive"}, values)
    try:
        done = lab.archive_node(ctx.session, ctx.actor, name, ctx.now)
    except UserError as e:
        return _home_again(request, ctx, {"node": str(e)}, values)
    return back("/", msg=f"archived {', '.join(done)}: no more requests; past rounds keep them")


def _override_fields(
    values: dict[str, str], pools: list[str]
) -> tuple[str, int | None, dict[str, int] | None, str, dict[str, str]]:
    """The override form: request, a total or GPUs per pool, reason; an error per field."""
    errors: dict[str, str] = {}
    key = values.get("request", "").strip()
    if not key:
        errors["request"] = "choose the request to override"
    per_pool: dict[str, int] = {}
    for pool in pools:
        raw = values.get(f"pool_{pool}", "").strip()
        if raw:
            n = whole_number(raw)
            if n is None:
                errors[f"pool_{pool}"] = "a whole number of GPUs"
            else:
                per_pool[pool] = n
    raw_total = values.get("total", "").strip()
    total = whole_number(raw_total) if raw_total else None
    if raw_total and total is None:
        errors["total"] = "a whole number of GPUs"
    elif not raw_total and not per_pool:
        errors["total"] = "give the GPUs in total, or per pool below"
    elif raw_total and per_pool:
        errors["total"] = "give a total or GPUs per pool, not both"
    reason = values.get("reason", "").strip()
    if not reason:
        errors["reason"] = "say why: the team sees it"
    elif len(reason) > TEXT_MAX:
        errors["reason"] = f"at most {TEXT_MAX:,} characters ({len(reason):,} given)"
    return key, total, per_pool or None, reason, errors


@router.post("/rounds/{round_id}/overrides")
async def set_override(request: Request, round_id: int, ctx: WebCtx) -> Response:
    """First the preview (who gains, who loses; or why it would be refused), then on confirm the override."""
    values = await posted(request)
    view = round_context(ctx, round_id)
    key, total, gpus, reason, errors = _override_fields(values, view.get("pool_names", []))
    if key and key not in view.get("request_keys", []):
        errors["request"] = "choose one of the round's requests"
    if not errors and values.get("confirm") == "yes":
        try:
            row = overrides.add_override(ctx.session, ctx.actor, round_id, key, total, gpus, reason)
        except (UserError, ValueError) as e:  # ValueError: OverrideError
            return back(f"/rounds/{round_id}", error=f"override of {key}: {e}")
        return back(f"/rounds/{round_id}", msg=f"override {row.id} set: {key} now has {sum(row.gpus.values()):,} GPUs")
    if not errors:
        try:
            view["override_preview"] = overrides.preview_override(
                ctx.session, ctx.actor, round_id, key, total, gpus, reason
            )
        except (UserError, ValueError) as e:
            errors["form"] = str(e)
    view.update(errors=errors, values=values)
    return render(request, ctx, "round.html", 422 if errors else 200, **view)


@router.post("/rounds/{round_id}/overrides/{override_id}/remove")
async def remove_override(request: Request, round_id: int, override_id: int, ctx: WebCtx) -> Response:
    """First the removal's own preview, then on confirm the removal."""
    values = await posted(request)
    if values.get("confirm") == "yes":
        try:
            row, key = overrides.remove_override(ctx.session, ctx.actor, round_id, override_id)
        except UserError as e:
            return back(f"/rounds/{round_id}", error=f"override {override_id}: {e}")
        return back(f"/rounds/{round_id}", msg=f"override {row.id} of {key} removed")
    try:
        preview = overrides.preview_removal(ctx.session, ctx.actor, round_id, override_id)
    except UserError as e:
        return back(f"/rounds/{round_id}", error=f"override {override_id}: {e}")
    view = round_context(ctx, round_id)
    view["removal_preview"] = {"id": override_id, "p": preview}
    return render(request, ctx, "round.html", **view)
