"""`fairshare health`: which team has been short of its fair share, for how long, and why.

From scenario files (each file one round, in the order given; no database) or from the database's
published and final rounds, oldest first.  Definitions in docs/health.md.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from fairshare.cli._kit import UsageError, friendly, loaded_files, out
from fairshare.cli.store import DbOption, open_database

if TYPE_CHECKING:
    from fairshare.engine.health import Health, HealthRules
    from fairshare.scenario import Scenario

STATUS_STYLE = {"starved": "bold red", "short": "yellow", "idle": "cyan", "ok": "green", "no_demand": "dim"}
CSV_FIELDS = [
    "node", "parent", "round", "demand", "fair_share", "fair_share_gpus", "received", "received_gpus", "used",
    "share_of_fair", "starved", "status", "starved_streak", "debt", "why",
]  # fmt: skip


@friendly
def health_cmd(
    scenarios: list[Path] = typer.Argument(
        None,
        help="Scenario files, one per round, oldest first; none = the database's published rounds.",
        show_default=False,
    ),
    rounds: int = typer.Option(None, "--rounds", help="Only the last N rounds."),
    names: list[str] = typer.Option(None, "--round", help="Only this published round (repeat for more; database)."),
    as_json: bool = typer.Option(False, "--json", help="Print the health as JSON (docs/health.md)."),
    as_csv: bool = typer.Option(False, "--csv", help="One CSV row per node and round."),
    starved_below: float = typer.Option(0.8, help="share_of_fair under this is starved (while demand is unmet)."),
    starved_rounds: int = typer.Option(2, help="Starved this many rounds running is status `starved`."),
    idle_below: float = typer.Option(0.5, help="Used under this fraction of what it received is `idle`."),
    half_life: float = typer.Option(3.0, "--half-life", help="Debt halves every this many rounds."),
    db: str = DbOption,
) -> None:
    """Per team and round: fair share by weights alone, received, used, share of fair; status, streak, debt."""
    from fairshare.engine.health import HealthRules, health, rounds_from

    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")
    if rounds is not None and rounds < 1:
        raise UsageError(f"--rounds must be at least 1, not {rounds}")
    rules = HealthRules(starved_below, starved_rounds, idle_below, half_life)
    if scenarios:
        if names:
            raise UsageError("--round picks published rounds from the database; with files, list the files instead")
        chosen = scenarios[-rounds:] if rounds else scenarios
        h = health(rounds_from(_named(chosen)), rules)
    else:
        h = _from_database(db, names or (), rounds, rules)
    if as_json:
        sys.stdout.write(json.dumps(h.to_dict(), indent=2) + "\n")
    elif as_csv:
        sys.stdout.write(_csv(h))
    else:
        _print(h, rules.starved_below)


def _named(paths: list[Path]) -> list[tuple[str, Scenario]]:
    """(round name, scenario) per file: the scenario's name, or the file's when two scenarios share one."""
    from fairshare.engine.health import check_one_lab
    from fairshare.scenario.files import load_scenario

    loaded = []
    for path in paths:
        loaded_files.append(path)
        loaded.append(load_scenario(path))
    check_one_lab([str(p) for p in paths], loaded)  # name the file, not the round, of another lab
    for names in ([s.name for s in loaded], [p.name for p in paths], [str(p) for p in paths]):
        if len(set(names)) == len(names):  # the scenarios' names, else the files' names, else their paths
            break
    return list(zip(names, loaded, strict=True))


def _from_database(db: str | None, names: tuple[str, ...] | list[str], last: int | None, rules: HealthRules) -> Health:
    from fairshare.errors import NotFound
    from fairshare.service.ops.health import assess, published_rounds
    from fairshare.store.db import session_factory
    from fairshare.store.models import utcnow

    _check_exists(db)
    with session_factory(open_database(db))() as session:
        rows = published_rounds(session, names, last)
        if not rows:
            raise NotFound("no published rounds yet; give scenario files, or publish a round first")
        return assess(session, rows, utcnow(), rules)


def _check_exists(db: str | None) -> None:
    """A read: a SQLite file that is not there is a mistake (no files given, or the wrong --db), not a
    database to create."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from fairshare.store.db import database_url

    try:
        url = make_url(database_url(db))
    except ArgumentError:
        return  # open_database says what is wrong with it
    path = url.database
    if url.get_backend_name() == "sqlite" and path and path != ":memory:" and not Path(path).exists():
        raise UsageError(
            f"no database at {path}: give scenario files (one per round), or --db (FAIRSHARE_DATABASE_URL) "
            "naming the service's database"
        )


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f}%"


def _print(h: Health, starved_below: float) -> None:
    table = Table(title="share of fair share per round (received / fair share by weights alone, effective GPUs)")
    table.add_column("node")
    for name in h.rounds:
        table.add_column(escape(name), justify="right")
    for col in ("status", "streak", "debt"):
        table.add_column(col, justify="right" if col != "status" else "left")
    for n in h.nodes:
        by_round = {r.round: r for r in n.rounds}
        cells = []
        for name in h.rounds:
            r = by_round.get(name)
            share = None if r is None else r.share_of_fair
            style = (
                "dim" if share is None else "red" if share < starved_below else "yellow" if share < 0.999 else "green"
            )
            cells.append(f"[{style}]{_pct(share)}[/]")
        status = f"[{STATUS_STYLE.get(n.status, '')}]{n.status}[/]"
        table.add_row("  " * n.depth + escape(n.name), *cells, status, str(n.starved_streak), f"{n.debt:,.1f}")
    out.print(table)
    for n in h.nodes:
        latest = n.latest()
        if n.status in ("starved", "short") and latest is not None:
            out.print(
                f"[bold]{escape(n.name)}[/] {n.status} {n.starved_streak} round(s): received {latest.received:,.1f} "
                f"of a fair share of {latest.fair_share:,.1f} effective GPUs in {escape(latest.round)}"
            )
            for w in latest.why:
                out.print(f"  {escape(w.text)}")


def _csv(h: Health) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for n in h.nodes:
        for r in n.rounds:
            writer.writerow(
                {
                    "node": n.name, "parent": n.parent or "", "round": r.round, "demand": r.demand,
                    "fair_share": r.fair_share, "fair_share_gpus": r.fair_share_gpus, "received": r.received,
                    "received_gpus": r.received_gpus, "used": "" if r.used is None else r.used,
                    "share_of_fair": "" if r.share_of_fair is None else r.share_of_fair, "starved": r.starved,
                    "status": n.status, "starved_streak": n.starved_streak, "debt": n.debt,
                    "why": "; ".join(w.text for w in r.why),
                }
            )  # fmt: skip
    return buf.getvalue()


def register(app: typer.Typer) -> None:
    app.command("health")(health_cmd)
