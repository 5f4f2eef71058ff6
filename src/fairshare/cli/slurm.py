"""`fairshare sync slurm` and `fairshare usage import slurm`: the allocation into Slurm, usage back.

The connector and the store (SQLAlchemy) are imported inside the commands, so that the other
commands start without them (see fairshare.cli)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from fairshare.cli._kit import (
    SYNC_HELP,
    UsageError,
    cli_actor,
    err,
    friendly,
    loaded_files,
    out,
    requires,
    subgroup,
)
from fairshare.cli.store import DbOption, open_database
from fairshare.errors import Unavailable

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from fairshare.connectors import slurm as sl
    from fairshare.connectors.source import Published

ClusterOption = typer.Option(None, "--cluster", help="Slurm cluster (default: the only one slurmdbd knows).")
PrefixOption = typer.Option("fs-", "--prefix", help="Account name = prefix + org node name (lower case).")
RootOption = typer.Option(
    None,
    "--root-account",
    help="Account of the org root: everything fairshare manages is under it "
    "(default: prefix + the root's name, created under Slurm's root).",
)
GresOption = typer.Option(
    None,
    "--gres-map",
    help="fairshare GPU type = Slurm gres type, e.g. H100=h100,V100=- "
    "('-': not enforced here). Default: the type in lower case.",
)
TimeoutOption = typer.Option(60.0, "--timeout", help="Seconds to wait for each Slurm command.")


def _config(cluster: str | None, prefix: str, root_account: str | None, gres_map: str | None) -> sl.SlurmConfig:
    from fairshare.connectors import slurm as sl

    try:
        return sl.SlurmConfig(
            cluster=cluster, prefix=prefix, root_account=root_account, gres_map=sl.parse_gres_map(gres_map)
        )
    except sl.PlanError as e:
        raise UsageError(str(e)) from e


@friendly
@requires("service", command="fairshare sync slurm")  # the connector reads and writes the store
def sync_slurm(
    scenario: Path = typer.Argument(
        None, help="Scenario file to allocate and enforce (or use --round).", show_default=False
    ),
    round_id: int = typer.Option(None, "--round", help="Enforce this published round from the database."),
    cluster: str = ClusterOption,
    prefix: str = PrefixOption,
    root_account: str = RootOption,
    gres_map: str = GresOption,
    users: str = typer.Option(
        None,
        "--users",
        help="With --round: MEMBER=UNIXUSER,... Members with a member or lead "
        "grant on a team get a user association with its account; only these users' "
        "associations are managed.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the diff and the sacctmgr commands; change nothing (the default)."
    ),
    apply: bool = typer.Option(False, "--apply", help="Run the commands, then read back and check."),
    timeout: float = TimeoutOption,
    force: bool = typer.Option(
        False,
        "--force",
        help="With --round: push it even if a newer round is published (the schedulers hold the newest).",
    ),
    db: str = DbOption,
) -> None:
    """Make Slurm's account tree enforce an allocation: accounts, GrpTRES GPU limits, Fairshare."""
    from fairshare.connectors import slurm as sl
    from fairshare.connectors.source import from_file, from_round, not_newest
    from fairshare.service.ops.sync import record_sync
    from fairshare.store.db import session_factory

    if dry_run and apply:
        raise UsageError("choose one of --dry-run and --apply")
    if (scenario is None) == (round_id is None):
        raise UsageError("give a scenario file or --round ID (one of them)")
    if users and round_id is None:
        raise UsageError("--users needs --round: members and their grants live in the database")
    cfg = _config(cluster, prefix, root_account, gres_map)
    syncer = sl.Syncer(cfg, sl.Runner(timeout=timeout))
    if scenario is not None:
        loaded_files.append(scenario)
        _sync(syncer, from_file(scenario), None, apply)
        return
    sessions = session_factory(open_database(db))
    with sessions() as session:
        pub = from_round(session, round_id)
        why = not_newest(session, round_id)
        if why is not None and not force:
            raise UsageError(f"{why}; --force pushes round {round_id} anyway")
        unix_users = None
        if users:
            unix_users, unmapped = sl.unix_users(pub, sl.parse_user_map(users))
            if unmapped:
                err.print(
                    f"[yellow]note:[/] no Unix user given for {', '.join(unmapped)}: no association for them",
                    highlight=False,
                )
        result: sl.SyncResult | None = None
        try:
            result = _sync(syncer, pub, unix_users, apply)
        except (sl.SlurmError, UsageError) as e:
            if apply:
                record_sync(
                    session,
                    cli_actor(),
                    "slurm",
                    round_id,
                    {"source": pub.label, "cluster": cfg.cluster, "result": f"failed: {e}"},
                )
            raise
        if apply and result is not None:
            record_sync(
                session, cli_actor(), "slurm", round_id, {"source": pub.label, **result.summary(), "result": "ok"}
            )


def _sync(syncer: sl.Syncer, pub: Published, users: dict[str, set[str]] | None, apply: bool) -> sl.SyncResult:
    from fairshare.connectors import slurm as sl

    managed = {u for us in users.values() for u in us} if users is not None else None
    try:
        p = syncer.plan(pub, users, managed)
        out.print(f"Slurm cluster {p.cluster}, accounts under {p.root}, from {pub.label}", highlight=False)
        for w in p.warnings:
            err.print(f"[yellow]warning:[/] {w}", highlight=False)
        if not p.commands:
            out.print("Slurm matches the allocation: nothing to change.", highlight=False)
            return sl.SyncResult(p, 0, True)
        out.print("diff (current -> wanted):", highlight=False)
        for line in p.changes:
            out.print(f"  {line}", highlight=False, markup=False)
        out.print("commands:" if apply else "commands (not run):", highlight=False)
        if not apply:
            for c in p.commands:
                out.print(f"  {c}", highlight=False, markup=False, soft_wrap=True)
            out.print(
                f"dry run: nothing changed; {len(p.commands)} commands. Run with --apply to make these changes.",
                highlight=False,
            )
            return sl.SyncResult(p)
        n = len(p.commands)
        done = [0]

        def progress(c: sl.Command) -> None:
            done[0] += 1
            out.print(f"  [{done[0]}/{n}] {c}", highlight=False, markup=False, soft_wrap=True)

        result = syncer.apply(pub, users, managed, progress=progress)
        if result.plan.commands != p.commands:  # the state changed between the two reads; say what ran
            out.print(
                "(Slurm changed since the diff above was read; the commands shown are the ones that ran)",
                highlight=False,
            )
        out.print(f"applied {result.applied} commands; read back: Slurm matches the allocation.", highlight=False)
        return result
    except sl.PlanError as e:
        raise UsageError(str(e)) from e
    except sl.SlurmError as e:
        raise Unavailable(str(e)) from e


def _parse_time(text: str, option: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise UsageError(f"{option} {text!r}: give a date (2026-11-01) or an ISO time (2026-11-01T08:00)") from e
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@friendly
@requires("service", command="fairshare usage import slurm")  # the connector writes the store
def usage_import_slurm(
    since: str = typer.Option(
        ..., "--since", help="Import from this date (UTC; whole days from its start).", show_default=False
    ),
    until: str = typer.Option(None, "--until", help="Up to this time (default: now)."),
    cluster: str = ClusterOption,
    prefix: str = PrefixOption,
    root_account: str = RootOption,
    gres_map: str = GresOption,
    timeout: float = TimeoutOption,
    db: str = DbOption,
) -> None:
    """Import GPU-hours per team and GPU type from Slurm's accounting (sacct) into the database.

    Usage is stored per UTC day; importing a period again replaces its days, never adds to them."""
    from fairshare.connectors import slurm as sl
    from fairshare.service.ops.sync import import_usage
    from fairshare.store.db import session_factory

    start = _parse_time(since, "--since")
    end = _parse_time(until, "--until") if until else dt.datetime.now(dt.UTC)
    if end <= start:
        raise UsageError(f"--until ({end.isoformat()}) is not after --since ({start.isoformat()})")
    cfg = _config(cluster, prefix, root_account, gres_map)
    run = sl.Runner(timeout=timeout)
    sessions = session_factory(open_database(db))
    try:
        name = cfg.cluster or sl.default_cluster(run)
        buckets = sl.read_usage(run, name, start, end)
    except sl.PlanError as e:
        raise UsageError(str(e)) from e
    except sl.SlurmError as e:
        raise Unavailable(str(e)) from e
    with sessions() as session:
        summary = import_usage(session, cli_actor(), lambda s: sl.store_usage(s, buckets, cfg, name, start, end))
        entitled = _entitlements(session)
    first = sl.day_floor(start)
    hours = (end - first).total_seconds() / 3600
    totals: dict[str, float] = summary["totals"]
    out.print(
        f"imported {summary['rows']} daily rows from {summary['source']}, "
        f"{first:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC ({hours:,.1f} h)",
        highlight=False,
    )
    if totals:
        t = Table(header_style="bold")
        for col in ("org node", "GPU", "GPU-hours", "entitled GPU-hours", "used"):
            t.add_column(col, justify="left" if col in ("org node", "GPU") else "right")
        for key, used in totals.items():
            node, gpu = key.split("/", 1)
            gpus = entitled.get(node, {}).get(gpu) if entitled is not None else None
            ent = gpus * hours if gpus is not None else None
            t.add_row(
                node,
                gpu,
                _hours(used),
                "" if ent is None else f"{ent:,.0f}",
                "" if not ent else f"{100 * used / ent:.1f}%",
            )
        out.print(t)
    skipped: dict[str, float] = summary["skipped_accounts"]
    if skipped:
        err.print(
            f"[yellow]note:[/] not imported: accounts that stand for no org node (prefix {cfg.prefix!r}): "
            + ", ".join(f"{a} ({_hours(h)} GPU-h)" for a, h in skipped.items()),
            highlight=False,
        )


def _hours(h: float) -> str:
    return f"{h:,.2f}" if h >= 10 or h == 0 else f"{h:.3g}"


def _entitlements(session: Session) -> dict[str, dict[str, int]] | None:
    """GPUs per node and type of the newest published round, if there is one."""
    from fairshare.connectors.source import from_round, newest_published

    rid = newest_published(session)
    return None if rid is None else from_round(session, rid).node_gpus


def register(app: typer.Typer) -> None:
    """Add `sync slurm` and `usage import slurm` to the CLI, joining `sync` and `usage` groups that
    other commands (e.g. `sync kueue`) may have created already."""
    subgroup(app, "sync", SYNC_HELP).command("slurm")(sync_slurm)
    usage = subgroup(app, "usage", "GPU usage read back from the schedulers, against entitlement.")
    subgroup(usage, "import", "Import usage from a scheduler's accounting.").command("slurm")(usage_import_slurm)
