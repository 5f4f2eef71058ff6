"""`fairshare`: files in; tables, JSON or CSV out.  Bad input exits 2 with one clear message.

Every command imports what it needs when it runs (the engine, the store, a connector), so that
`fairshare --help` starts in a fraction of a second and `fairshare allocate` loads only the
engine; tests/test_cli_startup.py keeps it so.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from fairshare import __version__
from fairshare.cli._kit import UsageError, err, friendly, loaded_files, out

if TYPE_CHECKING:
    from fairshare.engine import Allocation, LeverSearch
    from fairshare.scenario import Scenario

app = typer.Typer(
    help="Share scarce GPUs among teams fairly, with a reason for every number.\n\n"
    "Start with: fairshare allocate examples/meta-ai-2023.yaml",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
ScenarioArg = typer.Argument(..., help="Scenario file (YAML or JSON; see docs/scenario.md).", show_default=False)


def _load(path: Path) -> Scenario:
    """The scenario, and everything loaded so far, lives until the command ends: gc.freeze()
    keeps Python's cycle collector from walking it again at every full collection while the
    engine runs (about 0.2 s of a 2.2 s command at 10,000 requests)."""
    from fairshare.scenario.files import load_scenario

    loaded_files.append(path)
    scenario = load_scenario(path)
    gc.freeze()
    return scenario


@app.command("allocate")
@friendly
def allocate_cmd(
    scenario: Path = ScenarioArg,
    as_json: bool = typer.Option(False, "--json", help="Print the allocation as JSON (docs/output.md)."),
    as_csv: bool = typer.Option(False, "--csv", help="Print one CSV row per request and pool."),
    fractional: bool = typer.Option(
        False, "--fractional", help="Exact LP shares (time-shared GPUs) instead of whole GPUs."
    ),
) -> None:
    """Compute who gets how many GPUs of which pool, and why."""
    from fairshare.cli._render import print_allocation, to_csv, to_json
    from fairshare.engine import allocate

    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")
    alloc = allocate(_load(scenario), fractional=fractional)
    if as_json:
        sys.stdout.write(to_json(alloc))
    elif as_csv:
        sys.stdout.write(to_csv(alloc))
    else:
        print_allocation(alloc, out)


@app.command()
@friendly
def validate(scenario: Path = ScenarioArg) -> None:
    """Check a scenario file: syntax, fields, references, and that its guarantees can hold."""
    from fairshare.engine import allocate

    s = _load(scenario)
    allocate(s, fractional=True)  # raises on infeasible guarantees
    gpus = sum(p.gpus for p in s.pools)
    asked = sum(r.gpus for r in s.requests)
    out.print(
        f"[green]ok[/]: {s.name}: {len(s.pools)} pools ({gpus:,} GPUs), {len(s.nodes())} org nodes, "
        f"{len(s.requests)} requests asking for {asked:,} GPUs"
    )


@app.command()
@friendly
def explain(
    scenario: Path = ScenarioArg,
    request_id: str = typer.Argument(..., help="The request's id.", show_default=False),
    max_seconds: float = typer.Option(
        120.0,
        "--max-seconds",
        min=1.0,
        max=86400.0,
        help="Stop searching what would change it after this long (each lever is a whole re-solve: "
        "about 1 s each at 10,000 requests); what was not searched is listed.",
    ),
) -> None:
    """Explain one request's allocation in full: what bound it, and what would change it."""
    from fairshare.engine import allocate
    from fairshare.engine.whatif import levers

    s = _load(scenario)
    ids = [r.id for r in s.requests]
    if request_id not in ids:
        close = [i for i in ids if request_id.lower() in i.lower() or i.lower() in request_id.lower()]
        raise UsageError(
            f"no request {request_id!r} in {scenario}"
            + (f"; did you mean {', '.join(close[:3])}?" if close else f"; requests: {', '.join(ids[:10])}")
        )
    alloc = allocate(s)
    r = alloc.request(request_id)
    req = next(q for q in s.requests if q.id == request_id)
    out.print(
        f"[bold]{r.id}[/] (team {r.team}) asked for {r.demand:,} GPUs"
        + (f", minimum {r.min:,}" if r.min else "")
        + f"; weight used {r.weight:g}"
        f" = {req.weight:g} x priority {s.policy.priority_weights[req.priority]:g} ({req.priority.value})"
        f" x urgency {r.weight / (req.weight * s.policy.priority_weights[req.priority]):.3g}"
    )
    got = ", ".join(f"{n:g} on {p}" for p, n in r.gpus.items()) or "nothing"
    out.print(f"It gets {r.total:g} GPUs ({got}), {r.effective:,.1f} reference-GPU equivalents.")
    out.print(f"[bold]Why:[/] {escape('[' + r.reason.code + ']')} {escape(r.reason.text)}")
    chain = _chain(alloc, r.team)
    out.print(
        "Its branch (GPUs received of GPUs asked; effective = reference-GPU equivalents): "
        + " -> ".join(
            f"{n.name} ({sum(n.gpus.values()):,.0f} of {n.demand:,} GPUs, {n.effective:,.0f} effective)" for n in chain
        )
    )
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("what would change it"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("re-solves"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("levers", total=None)
        deadline = time.monotonic() + max_seconds
        found = levers(
            s,
            request_id,
            alloc,
            lambda done, total: progress.update(task, completed=done, total=total),
            stop=lambda: time.monotonic() > deadline,
        )
    if found.satisfied:
        out.print("Nothing would give it more: it has all it asked for, on its fastest GPU type.")
        return
    _print_levers(found, bool(r.min))


def _print_levers(found: LeverSearch, has_min: bool) -> None:
    """The levers that give the request more (the smallest change found, its gain, who pays),
    then, once each, the levers that gain nothing within what was searched."""
    if found.levers:
        t = Table(
            title="what would give it more (the smallest change found of each lever, everything else as is)",
            header_style="bold",
        )
        t.add_column("change")
        t.add_column("GPUs gained", justify="right")
        t.add_column("effective gained", justify="right")
        if has_min:
            t.add_column("funded?")
        t.add_column("who pays (effective lost, top 3)")
        for lv in found.levers:
            row = [lv.description, f"{lv.gain:+,g}", f"{lv.effective_gain:+,.1f}"]
            if has_min:
                row.append("yes" if lv.funded else "no")
            row.append(", ".join(f"{x.team} -{x.effective:,.1f}" for x in lv.losers) or "nobody (spare GPUs)")
            t.add_row(*row)
        out.print(t)
    else:
        out.print("No single change of the levers searched gives it more.")
    if found.no_effect:
        out.print("[bold]No effect:[/] " + "; ".join(escape(f"{lv.label} ({lv.searched})") for lv in found.no_effect))
    if found.not_searched:
        out.print(f"[yellow]Not searched (stopped):[/] {escape(', '.join(found.not_searched))}")
    out.print(f"[dim]{found.solves} re-solves (at most {found.bound}: each lever's largest change, then bisection)[/]")


def _chain(alloc: Allocation, team: str) -> list:
    nodes = {n.name: n for n in alloc.nodes}
    chain = []
    name: str | None = team
    while name is not None:
        chain.append(nodes[name])
        name = nodes[name].parent
    return list(reversed(chain))


@app.command()
@friendly
def diff(
    before: Path = typer.Argument(..., help="Scenario A (e.g. the current proposal).", show_default=False),
    after: Path = typer.Argument(..., help="Scenario B (e.g. A with the 540B model dropped).", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print the changes as JSON."),
    show_all: bool = typer.Option(False, "--all", help="Also list teams and requests that do not change."),
) -> None:
    """What-if: who gains and who loses how many GPUs between two scenarios."""
    from fairshare.engine import allocate
    from fairshare.engine.whatif import diff as diff_allocations

    a, b = allocate(_load(before)), allocate(_load(after))
    changes = diff_allocations(a, b)
    if as_json:
        sys.stdout.write(
            json.dumps(
                [
                    {"kind": c.kind, "name": c.name, "before": c.before, "after": c.after, "delta": c.delta}
                    for c in changes
                ],
                indent=2,
            )
            + "\n"
        )
        return
    t = Table(title=f"{a.scenario} -> {b.scenario}: GPUs", header_style="bold")
    for col in ("", "name", "before", "after", "change"):
        t.add_column(col, justify="right" if col in ("before", "after", "change") else "left")
    for c in changes:
        if not show_all and abs(c.delta) < 1e-9:
            continue
        color = "green" if c.delta > 0 else "red" if c.delta < 0 else "dim"
        t.add_row(c.kind, c.name, f"{c.before:g}", f"{c.after:g}", f"[{color}]{c.delta:+g}[/]")
    out.print(t)
    if not any(abs(c.delta) > 1e-9 for c in changes):
        out.print("No team or request changes.")


@app.command()
def schema() -> None:
    """Print the scenario file's JSON Schema (published as docs/scenario.schema.json)."""
    from fairshare.scenario import Scenario

    sys.stdout.write(json.dumps(Scenario.model_json_schema(), indent=2, sort_keys=True) + "\n")


@app.command()
def version() -> None:
    """Print fairshare's version."""
    out.print(__version__)


def _register_service_commands() -> None:
    from fairshare.cli import rounds as cli_client
    from fairshare.cli import store as cli_store

    app.add_typer(cli_store.db_app, name="db")
    app.add_typer(cli_store.token_app, name="token")
    app.command("import")(cli_store.import_cmd)
    app.command("export")(cli_store.export_cmd)
    app.command("serve")(cli_store.serve_cmd)
    app.add_typer(cli_client.round_app, name="round")
    app.add_typer(cli_client.request_app, name="request")
    app.add_typer(cli_client.appeal_app, name="appeal")
    from fairshare.cli.slurm import register

    register(app)  # sync slurm, usage import slurm (joins a `sync` group)
    from fairshare.cli.kueue import register as register_kueue

    register_kueue(app)  # sync kueue (joins `sync`)
    from fairshare.cli.simulate import register as register_simulate

    register_simulate(app)  # simulate
    from fairshare.cli.health import register as register_health

    register_health(app)  # health


_register_service_commands()
