"""What every `fairshare` command shares: the consoles and one way to report bad input.

Nothing here imports the engine, the store or a connector: `fairshare --help` and `fairshare
allocate` would pay for SQLAlchemy, HiGHS and the rest at every start.  The errors those modules
raise are therefore recognised by name (see `_raised`), never imported.
"""

from __future__ import annotations

import functools
import getpass
import sys
from pathlib import Path
from typing import Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

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


class UsageError(Exception):
    """Bad input the user can fix; printed without a traceback, exit code 2."""


class Unavailable(Exception):
    """Not the user's input: a server or database that cannot be reached; exit code 1."""


SCENARIO_FILE_ERROR = "fairshare.loader:ScenarioFileError"
INFEASIBLE = "fairshare.engine.guarantees:InfeasibleGuarantees"
SOLVER_ERROR = "fairshare.engine.highs:SolverError"
USER_ERRORS = ("fairshare.store.db:DatabaseError", "fairshare.store.repo:NotFound",
               "fairshare.connectors.source:NotPublished")  # printed as they are, exit code 2
KNOWN_ERRORS = (SCENARIO_FILE_ERROR, INFEASIBLE, SOLVER_ERROR, *USER_ERRORS)


def _raised(e: BaseException, where: str) -> bool:
    """Whether `e` is an instance of `where` ("module:Class").  The class is looked up only if its
    module is imported already: a module that was never imported cannot have raised it."""
    module, _, name = where.partition(":")
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(e, cls)


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
    """Print an expected error as a message on stderr and return the exit code; None for anything else."""
    if _raised(e, SCENARIO_FILE_ERROR):
        err.print(f"[red]error:[/] {escape(str(e.path))} is not a valid scenario:", highlight=False)  # type: ignore[attr-defined]
        for p in e.problems:  # type: ignore[attr-defined]
            where = f"{e.path}:{p.line}" if p.line else e.path  # type: ignore[attr-defined]
            loc = f" {p.location}:" if p.location else ""
            err.print(f"  {where}:{loc} {p.message}", highlight=False, markup=False)
        return 2
    if _raised(e, INFEASIBLE):
        where = f"{loaded_files[-1]}: " if loaded_files else ""
        err.print(f"[red]error:[/] {escape(f'{where}infeasible guarantees: {e}')}", highlight=False)
        return 2
    if isinstance(e, UsageError) or any(_raised(e, w) for w in USER_ERRORS):
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        return 2
    if isinstance(e, Unavailable):
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        return 1
    if _raised(e, SOLVER_ERROR):  # not the user's input: say so, and how to report it
        err.print(f"[red]error:[/] the LP solver could not finish ({escape(str(e))}). This is a fairshare bug or a "
                  "numerically extreme scenario; please report it with the scenario file.", highlight=False)
        return 1
    return None
