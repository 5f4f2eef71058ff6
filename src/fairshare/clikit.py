"""What every `fairshare` command shares: the consoles and one way to report bad input."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, TypeVar

import typer
from rich.console import Console

from fairshare.engine import InfeasibleGuarantees
from fairshare.engine.highs import SolverError
from fairshare.loader import ScenarioFileError
from fairshare.connectors.source import NotPublished
from fairshare.store.db import DatabaseError
from fairshare.store.repo import NotFound

out = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=400)

F = TypeVar("F", bound=Callable[..., object])


loaded_files: list[Path] = []  # the files read by the running command, for error messages


class UsageError(Exception):
    """Bad input the user can fix; printed without a traceback, exit code 2."""


class Unavailable(Exception):
    """Not the user's input: a server or database that cannot be reached; exit code 1."""


def friendly(fn: F) -> F:
    """Turn every expected input error into one message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return fn(*args, **kwargs)
        except ScenarioFileError as e:
            err.print(f"[red]error:[/] {e.path} is not a valid scenario:", highlight=False)
            for p in e.problems:
                where = f"{e.path}:{p.line}" if p.line else e.path
                loc = f" {p.location}:" if p.location else ""
                err.print(f"  {where}:{loc} {p.message}", highlight=False, markup=False)
            raise typer.Exit(2)
        except InfeasibleGuarantees as e:
            where = f"{loaded_files[-1]}: " if loaded_files else ""
            err.print(f"[red]error:[/] {where}infeasible guarantees: {e}", highlight=False)
            raise typer.Exit(2)
        except (UsageError, DatabaseError, NotFound, NotPublished) as e:
            err.print(f"[red]error:[/] {e}", highlight=False)
            raise typer.Exit(2)
        except Unavailable as e:
            err.print(f"[red]error:[/] {e}", highlight=False)
            raise typer.Exit(1)
        except SolverError as e:  # not the user's input: say so, and how to report it
            err.print(f"[red]error:[/] the LP solver could not finish ({e}). This is a fairshare bug or a "
                      "numerically extreme scenario; please report it with the scenario file.", highlight=False)
            raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]


