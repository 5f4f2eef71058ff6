"""Commands that talk to a fairshare server: the steps of a round, requests, appeals."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from fairshare.cli._kit import UsageError, friendly, out
from fairshare.workflow import AppealState, Ruling

if TYPE_CHECKING:
    from fairshare.cli._http import Api
    from fairshare.scenario import Request

UrlOption = typer.Option(
    "http://127.0.0.1:8000", "--url", envvar="FAIRSHARE_URL", show_envvar=True, help="The fairshare server."
)
TokenOption = typer.Option(
    None, "--token", envvar="FAIRSHARE_TOKEN", show_envvar=True, help="Your API token.", show_default=False
)
JsonOption = typer.Option(False, "--json", help="Print the server's JSON.")

round_app = typer.Typer(help="Allocation rounds on a fairshare server.", no_args_is_help=True)
request_app = typer.Typer(help="Requests for GPUs in a round.", no_args_is_help=True)
appeal_app = typer.Typer(help="Appeals against a published allocation.", no_args_is_help=True)


def _api(url: str, token: str | None) -> Api:
    """The server's client; httpx is imported by the commands that call a server, not at start-up."""
    from fairshare.cli._http import Api

    return Api(url, token)


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _print_round(r: dict[str, Any]) -> None:
    steps = ", ".join(r["next_steps"]) or "none (final)"
    out.print(f"round {r['id']} [bold]{r['name']}[/]: {r['state']}; next: {steps}")


@round_app.command("list")
@friendly
def round_list(url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Rounds, newest first."""
    page = _api(url, token).get("/rounds", limit=1000)
    if as_json:
        return _dump(page)
    for r in page["items"]:
        _print_round(r)


@round_app.command("create")
@friendly
def round_create(
    name: str = typer.Argument(..., help="Round name, e.g. 2026-12."),
    date: dt.datetime = typer.Option(
        None, "--date", formats=["%Y-%m-%d"], help="The round's own date (urgency counts from it), e.g. 2026-12-01."
    ),
    appeal_window_hours: float = typer.Option(14 * 24, help="How long appeals are accepted after publishing."),
    appeal_response_hours: float = typer.Option(3 * 24, help="How long a committee has before an appeal escalates."),
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a round (draft), dated and with its appeal windows."""
    hours_checked(appeal_window_hours=appeal_window_hours, appeal_response_hours=appeal_response_hours)
    body: dict[str, Any] = {
        "name": name,
        "appeal_window_hours": appeal_window_hours,
        "appeal_response_hours": appeal_response_hours,
    }
    if date is not None:
        body["date"] = date.date().isoformat()
    r = _api(url, token).post("/rounds", body)
    _dump(r) if as_json else _print_round(r)


def hours_checked(**hours: float) -> None:
    """Appeal windows as the API takes them (more than 0, at most a year): a bad one is named here, exit 2."""
    for name, value in hours.items():
        if not 0 < value <= 24 * 365:
            raise UsageError(f"--{name.replace('_', '-')} {value:g}: give a number of hours above 0, at most 8760")


DryRunOption = typer.Option(False, "--dry-run", help="Show who would gain and who would lose; change nothing.")


def _preview(api: Api, method: str, path: str, body: Any, as_json: bool) -> None:
    """Ask the server for a dry run and show it; a preview of a refused action exits 2, as the action would."""
    p = api.call(method, path, json=body, params={"dry_run": "true"})
    if as_json:
        _dump(p)
    else:
        table = Table("", "name", "GPUs before", "after", "change", "effective before", "after", title="Preview")
        for c in p["changes"]:
            table.add_row(
                c["kind"],
                c["name"],
                f"{c['gpus_before']:,}",
                f"{c['gpus_after']:,}",
                f"{c['gpus_delta']:+,}",
                f"{c['effective_before']:,.1f}",
                f"{c['effective_after']:,.1f}",
            )
        out.print(table if p["changes"] else "nothing would move")
        if p.get("absorbed_by"):
            out.print(f"absorbed by the subtree of {p['absorbed_by']!r}")
        out.print(f"[red]would be refused:[/] {p['reason']}" if p["refused"] else "nothing saved (dry run)")
    if p["refused"]:
        raise typer.Exit(2)


def _step(step: str, doc: str) -> None:
    @friendly
    def command(
        round_id: int = typer.Argument(..., help="Round id."),
        url: str = UrlOption,
        token: str = TokenOption,
        as_json: bool = JsonOption,
    ) -> None:
        r = _api(url, token).post(f"/rounds/{round_id}/{step}")
        _dump(r) if as_json else _print_round(r)

    @friendly
    def propose(
        round_id: int = typer.Argument(..., help="Round id."),
        dry_run: bool = DryRunOption,
        url: str = UrlOption,
        token: str = TokenOption,
        as_json: bool = JsonOption,
    ) -> None:
        if dry_run:
            return _preview(_api(url, token), "POST", f"/rounds/{round_id}/propose", None, as_json)
        r = _api(url, token).post(f"/rounds/{round_id}/propose")
        _dump(r) if as_json else _print_round(r)

    chosen: Any = propose if step == "propose" else command
    chosen.__doc__ = doc
    round_app.command(step)(chosen)


for _name, _doc in [
    ("open", "Accept requests."),
    ("close", "Freeze the requests."),
    ("reopen", "Accept requests again."),
    ("propose", "Run the engine (again) and propose; --dry-run shows what would change against the proposal."),
    ("publish", "Publish the proposal to everyone; opens the appeal window."),
    ("finalize", "Finalize once the appeal window has ended."),
]:
    _step(_name, _doc)


@round_app.command("show")
@friendly
def round_show(
    round_id: int = typer.Argument(..., help="Round id."),
    team: str = typer.Option(None, help="Only this team's requests."),
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """The round's allocation: GPUs per request and pool, with reasons."""
    api = _api(url, token)
    r = api.get(f"/rounds/{round_id}")
    items: list[dict[str, Any]] = []
    while True:
        page = api.get(f"/rounds/{round_id}/allocation", team=team, limit=1000, offset=len(items))
        items += page["items"]
        if len(items) >= page["total"] or not page["items"]:
            break
    if as_json:
        return _dump({"round": r, "allocation": items})
    _print_round(r)
    t = Table(header_style="bold")
    for col in ("request", "team", "asked", "GPUs", "pools", "why"):
        t.add_column(col, justify="right" if col in ("asked", "GPUs") else "left")
    for a in items:
        pools = ", ".join(f"{p} {n}" for p, n in a["gpus"].items())
        t.add_row(a["request"], a["team"], f"{a['demand']:,}", f"{a['total']:,}", pools, a["reason"])
    out.print(t)


@round_app.command("entitlement")
@friendly
def round_entitlement(
    round_id: int = typer.Argument(..., help="Round id."),
    node: str = typer.Argument(..., help="Team or any org node."),
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """What a team (or any node) is entitled to, and why."""
    e = _api(url, token).get(f"/rounds/{round_id}/entitlements/{node}")
    if as_json:
        return _dump(e)
    out.print(e["reason"])
    for pool, n in e["gpus"].items():
        out.print(f"  {pool}: {n:,}")


@round_app.command("override")
@friendly
def round_override(
    round_id: int = typer.Argument(..., help="Round id."),
    request: str = typer.Option(..., help="Request id."),
    gpus: int = typer.Option(..., min=0, help="Total GPUs to pin it at."),
    reason: str = typer.Option(..., help="Why (recorded in the audit log)."),
    dry_run: bool = DryRunOption,
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """Pin a request in the proposal; its own branch absorbs the change (siblings first, then up)."""
    body = {"request": request, "gpus": gpus, "reason": reason}
    if dry_run:
        return _preview(_api(url, token), "POST", f"/rounds/{round_id}/overrides", body, as_json)
    o = _api(url, token).post(f"/rounds/{round_id}/overrides", body)
    _dump(o) if as_json else out.print(
        f"override {o['id']}: {request} pinned at "
        + (", ".join(f"{n} on {p}" for p, n in o["gpus"].items()) or "0 GPUs")
        + (f" (absorbed by {o['scope']})" if o.get("scope") else "")
    )


@round_app.command("override-remove")
@friendly
def round_override_remove(
    round_id: int = typer.Argument(..., help="Round id."),
    override_id: int = typer.Argument(..., help="Override id (see the round's overrides)."),
    dry_run: bool = DryRunOption,
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """Remove an active override: the round as if it had never been made."""
    path = f"/rounds/{round_id}/overrides/{override_id}"
    if dry_run:
        return _preview(_api(url, token), "DELETE", path, None, as_json)
    o = _api(url, token).call("DELETE", path)
    _dump(o) if as_json else out.print(f"override {o['id']} of {o['request']} removed")


def _read_requests(path: Path) -> list[Request]:
    """One request, a list of them, or a scenario-style mapping with `requests:`."""
    from pydantic import ValidationError

    from fairshare.scenario import Request
    from fairshare.scenario.files import ScenarioFileError, read_yaml

    try:
        data = read_yaml(path)
    except ScenarioFileError as e:  # file:line: what is wrong
        raise UsageError(str(e)) from None
    items = data.get("requests") if isinstance(data, dict) and "requests" in data else data
    items = items if isinstance(items, list) else [items]
    out_: list[Request] = []
    for i, item in enumerate(items):
        try:
            out_.append(Request.model_validate(item))
        except ValidationError as e:
            where = f"{path}: request {i + 1}" + (f" ({item.get('id')})" if isinstance(item, dict) else "")
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
            raise UsageError(f"{where}: {problems}") from e
    return out_


@request_app.command("submit")
@friendly
def request_submit(
    file: Path = typer.Argument(..., help="YAML/JSON: one request, a list, or {requests: [...]}."),
    round_id: int = typer.Option(..., "--round", help="Round id."),
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """Submit requests (same fields as in a scenario file, plus justification)."""
    api = _api(url, token)
    done = [
        api.post(f"/rounds/{round_id}/requests", r.model_dump(mode="json", exclude_none=True))
        for r in _read_requests(file)
    ]
    if as_json:
        return _dump(done)
    for r in done:
        out.print(
            f"submitted {r['key']} (id {r['id']}, version {r['version']}) for team {r['team']}: {r['gpus']:,} GPUs"
        )


@request_app.command("list")
@friendly
def request_list(
    round_id: int = typer.Option(..., "--round", help="Round id."),
    team: str = typer.Option(None, help="Only this team's."),
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """A round's requests."""
    page = _api(url, token).get(f"/rounds/{round_id}/requests", team=team, limit=1000)
    if as_json:
        return _dump(page)
    for r in page["items"]:
        out.print(f"{r['id']:>6} {r['key']} ({r['team']}): {r['gpus']:,} GPUs, {r['priority']}, version {r['version']}")


@request_app.command("copy-forward")
@friendly
def request_copy_forward(
    round_id: int = typer.Option(..., "--round", help="The open round to copy into."),
    team: str = typer.Option(None, help="Only this team's (and its subtree's); default everyone's (committee)."),
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """Copy the previous round's requests into an open round, each a new request you can edit or withdraw."""
    if team is not None and not team.strip():
        raise UsageError("--team is empty: give a team's name, or leave it out to copy everyone's (committee)")
    api = _api(url, token)
    done = api.call("POST", f"/rounds/{round_id}/requests/copy-forward", params={"team": team} if team else None)
    if as_json:
        return _dump(done)
    out.print(f"copied {len(done['copied'])} request(s) from round {done['from_round_name']}")
    for r in done["copied"]:
        out.print(f"  {r['key']} ({r['team']}): {r['gpus']:,} GPUs, id {r['id']}, version {r['version']}")
    for s in done["skipped"]:
        out.print(f"  [yellow]skipped[/] {s['request']} ({s['team']}): {s['why']}")


@request_app.command("withdraw")
@friendly
def request_withdraw(
    request_id: int = typer.Argument(..., help="Request id (see `request list`)."),
    version: int = typer.Option(
        None, min=1, help="The version you read (default: the current one; a stale one is refused)."
    ),
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """Withdraw a request while its round is open."""
    api = _api(url, token)
    if version is None:
        version = api.get(f"/requests/{request_id}")["version"]
    r = api.post(f"/requests/{request_id}/withdraw", {"version": version})
    _dump(r) if as_json else out.print(f"withdrew {r['key']} (id {r['id']}) of team {r['team']}")


EDITABLE = ("gpus", "min", "priority", "launch", "weight", "justification")


@request_app.command("edit")
@friendly
def request_edit(
    request_id: int = typer.Argument(..., help="Request id (see `request list`)."),
    file: Path = typer.Option(None, "--file", help="YAML/JSON: the whole request, replacing the current version."),
    gpus: int = typer.Option(None, min=1, help="GPUs asked for."),
    min_gpus: int = typer.Option(None, "--min", min=1, help="Minimum viable size."),
    priority: str = typer.Option(None, help="low, normal, high or critical."),
    launch: dt.datetime = typer.Option(None, formats=["%Y-%m-%d"], help="Launch date, e.g. 2026-12-15."),
    weight: float = typer.Option(None, min=0, help="Weight among the team's requests (above 0)."),
    justification: str = typer.Option(None, help="Why the team needs it."),
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """A new version of a request: the fields given change, the rest stay as they are."""
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "gpus": gpus,
            "min": min_gpus,
            "priority": priority,
            "launch": launch.date().isoformat() if launch else None,
            "weight": weight,
            "justification": justification,
        }.items()
        if v is not None
    }
    if file is None and not changes:
        raise UsageError(f"nothing to change: give --file or one of --{', --'.join(EDITABLE)}")
    api = _api(url, token)
    current = api.get(f"/requests/{request_id}")
    if file is not None:
        read = _read_requests(file)
        if len(read) != 1:
            raise UsageError(f"{file}: holds {len(read)} requests; give exactly one")
        body = read[0].model_dump(mode="json", exclude_none=True)
    else:
        body = {k: current[k] for k in ("team", "gpus", "min", "priority", "launch", "weight", "speed", "sites")}
        if current.get("justification") is not None:
            body["justification"] = current["justification"]
        body = {k: v for k, v in {**body, **changes}.items() if v is not None}
    body.setdefault("id", current["key"])
    body["version"] = current["version"]
    r = api.put(f"/requests/{request_id}", body)
    _dump(r) if as_json else out.print(
        f"{r['key']} (id {r['id']}) is now at version {r['version']}: {r['gpus']:,} GPUs, {r['priority']}"
    )


@appeal_app.command("file")
@friendly
def appeal_file(
    round_id: int = typer.Option(..., "--round", help="Round id."),
    request: str = typer.Option(..., help="Request id."),
    asked: int = typer.Option(..., min=1, help="GPUs the team asks for."),
    reason: str = typer.Option(..., help="Why."),
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """Appeal a published allocation (team leads)."""
    a = _api(url, token).post(f"/rounds/{round_id}/appeals", {"request": request, "asked": asked, "reason": reason})
    _dump(a) if as_json else out.print(
        f"appeal {a['id']} filed; with the committee of {a['handler']} until {a['deadline']}"
    )


@appeal_app.command("list")
@friendly
def appeal_list(
    round_id: int = typer.Option(None, "--round", help="Round id."),
    state: AppealState = typer.Option(None, help="Only appeals in this state."),
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """Appeals you may see, soonest deadline first."""
    page = _api(url, token).get("/appeals", round_id=round_id, state=state.value if state else None, limit=1000)
    if as_json:
        return _dump(page)
    for a in page["items"]:
        late = " OVERDUE" if a["overdue"] else ""
        out.print(
            f"{a['id']:>5} {a['request']} ({a['team']}): asks {a['asked']:,}, has {a['current']:,}; "
            f"{a['state']} with {a['handler']}, due {a['deadline']}{late}"
        )


@appeal_app.command("rule")
@friendly
def appeal_rule(
    appeal_id: int = typer.Argument(..., help="Appeal id."),
    ruling: Ruling = typer.Option(..., help="grant, partial or reject."),
    amount: int = typer.Option(None, min=0, help="GPUs granted (partial: required; grant: default asked)."),
    reason: str = typer.Option(..., help="Why (shown to the team)."),
    dry_run: bool = DryRunOption,
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """Rule on an appeal (the committee that has it); a grant is absorbed by the request's own branch."""
    body: dict[str, Any] = {"ruling": ruling.value, "reason": reason}
    if amount is not None:
        body["amount"] = amount
    if dry_run:
        return _preview(_api(url, token), "POST", f"/appeals/{appeal_id}/ruling", body, as_json)
    a = _api(url, token).post(f"/appeals/{appeal_id}/ruling", body)
    _dump(a) if as_json else out.print(
        f"appeal {a['id']}: {a['state']}"
        + (f" ({a['ruling_amount']:,} GPUs)" if a["ruling_amount"] is not None else "")
    )


@appeal_app.command("reappeal")
@friendly
def appeal_reappeal(
    appeal_id: int = typer.Argument(..., help="Appeal id."),
    reason: str = typer.Option(..., help="Why the ruling should change."),
    url: str = UrlOption,
    token: str = TokenOption,
    as_json: bool = JsonOption,
) -> None:
    """Take a rejected or partial ruling to the next committee up (team leads)."""
    a = _api(url, token).post(f"/appeals/{appeal_id}/reappeal", {"reason": reason})
    _dump(a) if as_json else out.print(
        f"appeal {a['id']} now with the committee of {a['handler']} until {a['deadline']}"
    )


@appeal_app.command("escalate")
@friendly
def appeal_escalate(url: str = UrlOption, token: str = TokenOption, as_json: bool = JsonOption) -> None:
    """Move every overdue appeal one committee up (run from cron)."""
    api = _api(url, token)
    moved = api.post("/appeals/escalate")
    # still overdue after escalating: already with the top committee, which nobody is above
    stuck = [a for a in api.get("/appeals", state="open", limit=1000)["items"] if a["overdue"]]
    if as_json:
        return _dump(moved)
    out.print(f"{len(moved)} appeal(s) escalated" + "".join(f"\n  {a['id']} -> {a['handler']}" for a in moved))
    for a in stuck:
        out.print(
            f"[yellow]appeal {a['id']}[/] ({a['request']}, {a['team']}) is overdue at the top: it is with the "
            f"committee of {a['handler']!r}, which nobody is above, since {a['deadline']}; that committee must rule "
            f"(fairshare appeal rule {a['id']} ...)"
        )
