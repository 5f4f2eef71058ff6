"""What every `fairshare` command shares: the consoles and one way to report bad input.

Nothing here imports the engine, the store or a connector: `fairshare --help` and `fairshare
allocate` would pay for SQLAlchemy, HiGHS and the rest at every start.  The errors those modules
raise are recognised by their place in `fairshare.errors`' tree, which costs nothing to import.
"""

from __future__ import annotations

import functools
import getpass
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from fairshare.errors import FairshareError, InfeasibleGuarantees, MissingExtra, UserError

out = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=400)

F = TypeVar("F", bound=Callable[..., object])


loaded_files: list[Path] = []  # the files read by the running command, for error messages


SYNC_HELP = "Enforce a published allocation in a scheduler (Slurm, Kueue)."


def subgroup(parent: typer.Typer, name: str, help: str) -> typer.Typer:
    """The command group `name` of `parent`, made by whichever command module registers first:
    `sync` holds commands of both cli_slurm and cli_kueue."""
    for info in parent.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    group = typer.Typer(help=help, no_args_is_help=True)
    parent.add_typer(group, name=name)
    return group


def cli_actor() -> str:
    """Who ran the command, for the audit log: cli:<login name>, or plain cli where the login name
    is unknown (a container's uid without a passwd entry)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


class UsageError(UserError):
    """Bad input the user can fix; printed without a traceback, exit code 2."""


# What each optional extra of pyproject.toml brings that a command imports (by import name), for
# `requires` to check before a command starts and `_report` to name when an import fails anyway.
EXTRAS: dict[str, tuple[str, ...]] = {
    "service": (
        "sqlalchemy",
        "alembic",
        "fastapi",
        "starlette",
        "uvicorn",
        "jinja2",
        "python_multipart",
        "itsdangerous",
        "prometheus_client",
        "plotly",
        "pydantic_settings",
    ),
    "kueue": ("kubernetes", "jsonschema", "celpy"),
    "simulate": ("matplotlib",),
    "ray": ("ray",),
}


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None  # finds it without importing it
    except (ImportError, ValueError):  # blocked, or a module left half-imported
        return False


def need(*extras: str, command: str) -> None:
    """Raise MissingExtra (one line, exit 2) naming those of `extras` whose packages are not all
    installed, and `command` (e.g. "fairshare serve") as what needs them."""
    missing = [extra for extra in extras if not all(_installed(package) for package in EXTRAS[extra])]
    if missing:
        raise MissingExtra(command, *missing)


def requires(*extras: str, command: str) -> Callable[[F], F]:
    """The command `command` needs these extras: checked before it starts (under @friendly)."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: object, **kwargs: object) -> object:
            need(*extras, command=command)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _providing_extra(e: ModuleNotFoundError) -> str | None:
    package = (e.name or "").split(".")[0]
    return next((extra for extra, packages in EXTRAS.items() if package in packages), None)


def friendly(fn: F) -> F:
    """Turn every expected input error into one message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            code = _report(e)
            if code is None:  # a bug (or typer's own Exit): let it through as it is
                raise
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


def _report(e: Exception) -> int | None:
    """Print an expected error as a message on stderr and return its exit code; None for anything else.
    Every error fairshare raises on purpose derives from `FairshareError` and carries its exit code; a
    package of an extra that is not installed is reported as the MissingExtra it is."""
    if isinstance(e, ModuleNotFoundError) and (extra := _providing_extra(e)) is not None:
        e = MissingExtra(None, extra)  # an import `requires` did not foresee
    if not isinstance(e, FairshareError):
        return None
    first, *rest = e.report_lines()
    if isinstance(e, InfeasibleGuarantees) and loaded_files:
        first = f"{loaded_files[-1]}: infeasible guarantees: {first}"
    elif isinstance(e, InfeasibleGuarantees):
        first = f"infeasible guarantees: {first}"
    err.print(f"[red]error:[/] {escape(first)}", highlight=False)
    for line in rest:
        err.print(line, highlight=False, markup=False)
    return e.exit_code
