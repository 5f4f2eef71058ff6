"""Commands on the local database: migrate, serve, import and export scenarios, issue tokens.

SQLAlchemy and the store are imported inside the commands, so that the other commands start
without them (see fairshare.cli)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from fairshare.cli._kit import UsageError, err, friendly, loaded_files, out, requires
from fairshare.workflow import Role

if TYPE_CHECKING:
    from sqlalchemy import Engine

DbOption = typer.Option(
    None,
    "--db",
    envvar="FAIRSHARE_DATABASE_URL",
    show_envvar=True,
    help="Database URL (default sqlite:///./fairshare.db; PostgreSQL: postgresql://user@host/db).",
)

# the Settings fields that `serve` takes from its options, as the user wrote them (for error messages)
SERVE_OPTIONS = {
    "database_url": "--db",
    "sync_on_publish": "--sync",
    "slurm_cluster": "--slurm-cluster",
    "slurm_prefix": "--slurm-prefix",
    "slurm_gres_map": "--slurm-gres-map",
    "slurm_users": "--slurm-users",
    "kueue_out": "--kueue-out",
}

db_app = typer.Typer(help="The database: create or migrate its schema.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for members of the lab.", no_args_is_help=True)


def open_database(url: str | None, migrate_sqlite: bool = True) -> Engine:
    """An engine at the current schema.  The embedded SQLite file is migrated on the spot
    (zero set-up); PostgreSQL must be migrated explicitly with `fairshare db upgrade`."""
    from fairshare.store.db import check_schema, make_engine, upgrade

    engine = make_engine(url)
    if migrate_sqlite and engine.url.get_backend_name() == "sqlite":
        upgrade(engine)
    check_schema(engine)
    return engine


@db_app.command("upgrade")
@friendly
@requires("service", command="fairshare db upgrade")
def db_upgrade(db: str = DbOption) -> None:
    """Apply every migration to the database (creates it when it is a new SQLite file)."""
    from fairshare.store.db import current_revision, make_engine, upgrade

    engine = make_engine(db)
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    where = engine.url.render_as_string(hide_password=True)
    out.print(f"{where}: schema at {after}" + ("" if before == after else f" (was {before or 'empty'})"))


@db_app.command("current")
@friendly
@requires("service", command="fairshare db current")
def db_current(db: str = DbOption) -> None:
    """Show the database's schema revision and the newest one this fairshare knows."""
    from fairshare.store.db import current_revision, head_revision, make_engine

    engine = make_engine(db)
    out.print(f"database: {current_revision(engine) or 'empty'}; newest: {head_revision()}")


@friendly
@requires("service", command="fairshare import")
def import_cmd(
    scenario: Path = typer.Argument(..., help="Scenario file (YAML or JSON).", show_default=False),
    round_name: str = typer.Option(
        None, "--round", help="Also load the file's requests into this round (created open if it does not exist)."
    ),
    prune: bool = typer.Option(
        False, "--prune", help="Archive the org nodes the file leaves out (teams that left); default: keep them."
    ),
    date: datetime = typer.Option(
        None, "--date", formats=["%Y-%m-%d"], help="A new --round's own date (default: the file's policy.date)."
    ),
    appeal_window_hours: float = typer.Option(14 * 24, help="A new --round's appeal window."),
    appeal_response_hours: float = typer.Option(3 * 24, help="A new --round's time to answer an appeal."),
    db: str = DbOption,
) -> None:
    """Import pools, org tree and policy from a scenario file (upsert by name)."""
    from fairshare.cli.rounds import hours_checked
    from fairshare.scenario.files import load_scenario
    from fairshare.service.ops import lab
    from fairshare.service.ops.people import local_admin
    from fairshare.store.db import session_factory

    hours_checked(appeal_window_hours=appeal_window_hours, appeal_response_hours=appeal_response_hours)
    loaded_files.append(scenario)
    s = load_scenario(scenario)
    new_round = lab.NewRound(date.date() if date else None, appeal_window_hours, appeal_response_hours)
    sessions = session_factory(open_database(db))
    with sessions() as session:
        counts = lab.import_scenario(session, local_admin("cli"), s, round_name, prune=prune, new_round=new_round)
    out.print(
        f"imported {s.name}: {counts['pools']} pools, {counts['nodes']} org nodes"
        + (f", {counts['requests']} requests into round {round_name!r}" if round_name else "")
    )
    if counts["archived"]:
        out.print(f"archived (left out of the file): {', '.join(counts['archived'])}")
    if counts["kept"]:
        out.print(
            f"kept {len(counts['kept'])} org node(s) the file leaves out: {', '.join(counts['kept'])} "
            "(--prune archives them)"
        )


@friendly
@requires("service", command="fairshare export")
def export_cmd(
    round_id: int = typer.Option(None, "--round", help="Export this round's requests and policy too."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of YAML."),
    db: str = DbOption,
) -> None:
    """Print the lab (and a round's requests) as a scenario file that `fairshare allocate` reads."""
    from fairshare.scenario.files import dump_scenario
    from fairshare.service.ops.rounds import get_round
    from fairshare.store.db import session_factory
    from fairshare.store.repo import export_scenario

    sessions = session_factory(open_database(db))
    with sessions() as session:  # no such round or node: NotFound, one line and exit 2 (clikit)
        s = export_scenario(session, get_round(session, round_id) if round_id else None)
    sys.stdout.write(s.model_dump_json(indent=2, exclude_defaults=True) + "\n" if as_json else dump_scenario(s))


@token_app.command("create")
@friendly
@requires("service", command="fairshare token create")
def token_create(
    member: str = typer.Option(..., "--member", help="Member name (created if new)."),
    role: Role = typer.Option(..., "--role", help="Role to grant: member, lead, committee or admin."),
    node: str = typer.Option(None, "--node", help="Subtree the role covers (default: the root)."),
    email: str = typer.Option(None, "--email", help="Member's e-mail."),
    label: str = typer.Option("", "--label", help="A note on what the token is for."),
    db: str = DbOption,
) -> None:
    """Grant a member a role over a subtree and print a new API token (shown once)."""
    from pydantic import TypeAdapter, ValidationError

    from fairshare.scenario import NAME_MAX, Name
    from fairshare.service.ops import lab
    from fairshare.service.ops.people import local_admin
    from fairshare.store.db import session_factory

    try:
        TypeAdapter(Name).validate_python(member)  # the API's rule for member names
    except ValidationError:
        raise UsageError(
            f"--member {member!r}: a member name is letters, digits and - _ . (starting with a letter "
            f"or digit), at most {NAME_MAX} characters, as in the API"
        ) from None
    sessions = session_factory(open_database(db))
    with sessions() as session:  # no such node: NotFound, one line and exit 2 (clikit)
        node_name, token = lab.enrol(session, local_admin("cli"), member, email, role, node, label)
    err.print(f"{member}: {role.value} of {node_name}. Token (store it now; it is not shown again):")
    print(token)


@friendly
@requires("service", command="fairshare serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes (PostgreSQL; SQLite serves one writer)."),
    sync: list[str] = typer.Option(
        [],
        "--sync",
        help="Push the allocation into this scheduler whenever it is "
        "published or an appeal changes it: slurm or kueue (repeatable).",
    ),
    slurm_cluster: str = typer.Option(None, help="--sync slurm: the Slurm cluster (default: the only one)."),
    slurm_prefix: str = typer.Option(
        None, help="--sync slurm: prefix of the accounts fairshare manages (default: fs-)."
    ),
    slurm_gres_map: str = typer.Option(None, help="--sync slurm: GPU type to gres type, e.g. H100=h100,V100=-."),
    slurm_users: str = typer.Option(
        None,
        help="--sync slurm: MEMBER=UNIXUSER,... members with a member or lead grant on a team get a user "
        "association with its account (as `sync slurm --users`).",
    ),
    kueue_out: Path = typer.Option(
        None, help="--sync kueue: write the manifests here instead of applying them to the current kube context."
    ),
    db: str = DbOption,
) -> None:
    """Run the REST API (docs at /docs, OpenAPI at /openapi.json) and the web pages (at /)."""
    import uvicorn
    from sqlalchemy import func, select

    from fairshare.service.ops.sync_hooks import hooks_for
    from fairshare.settings import hand_over, load_settings
    from fairshare.store import models as m
    from fairshare.store.db import database_url, session_factory

    # the options given win over the environment's FAIRSHARE_* variables (docs/service.md#settings)
    options = {
        "database_url": database_url(db),
        "sync_on_publish": sync,
        "slurm_cluster": slurm_cluster,
        "slurm_prefix": slurm_prefix,
        "slurm_gres_map": slurm_gres_map,
        "slurm_users": slurm_users,
        "kueue_out": kueue_out,
    }
    settings = load_settings(labels=SERVE_OPTIONS, **{k: v for k, v in options.items() if v not in (None, [])})
    hooks_for(settings)  # a bad --slurm-prefix, --slurm-gres-map or --slurm-users: one message and exit 2 here
    engine = open_database(settings.database_url)
    with session_factory(engine)() as session:
        members = session.scalar(select(func.count()).select_from(m.Member)) or 0
        nodes = session.scalar(select(func.count()).select_from(m.Node)) or 0
    if not nodes:
        err.print("[yellow]hint:[/] the organisation is empty: `fairshare import examples/meta-ai-2023.yaml`")
    if not members:
        err.print("[yellow]hint:[/] nobody can sign in yet: `fairshare token create --member you --role admin`")
    hand_over(settings)  # to the app factory of every worker, in one variable
    out.print(
        f"fairshare API on http://{host}:{port} (docs: /docs) using {engine.url.render_as_string(hide_password=True)}"
    )
    uvicorn.run(
        "fairshare.service.api.app:serve_app", factory=True, host=host, port=port, workers=workers, log_level="info"
    )
