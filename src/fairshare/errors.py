"""One tree for every error fairshare raises on purpose.  Standard library only: the CLI imports it
at start-up to map errors to exit codes, and the API to map them to HTTP statuses, by class.

    FairshareError
    ├── UserError          bad input the user can fix              exit 2, HTTP 422
    │   ├── NotFound       a named thing does not exist            exit 2, HTTP 404
    │   ├── Forbidden      the caller may not do this here         exit 2, HTTP 403
    │   └── Conflict       not possible in the current state       exit 2, HTTP 409
    │       └── InfeasibleGuarantees
    ├── Unavailable        a database, scheduler or server cannot be reached   exit 1, HTTP 503
    └── InternalError      not the input: a bug or numerical trouble           exit 1, HTTP 500
        └── SolverError    the LP solver could not finish                      exit 1, HTTP 503

Each layer derives its own errors from these (`ScenarioFileError(UserError)`, `SlurmUnreachable
(Unavailable)`, ...); a class may override `exit_code` or `http_status` where its meaning asks.
"""

from __future__ import annotations


class FairshareError(Exception):
    """Base of every error fairshare raises on purpose; anything else is a bug."""

    exit_code = 1
    http_status = 500

    def report_lines(self) -> list[str]:
        """The message as the CLI prints it: the first line after `error:`, the rest below it."""
        return [str(self)]


class UserError(FairshareError):
    """Bad input the user can fix: the message names the field, line or value and what to do."""

    exit_code = 2
    http_status = 422


class NotFound(UserError, LookupError):
    """A named round, request, node or file does not exist."""

    http_status = 404


class Forbidden(UserError):
    """The caller's roles do not cover this step here."""

    http_status = 403


class Conflict(UserError):
    """The step is not possible in the current state (of a round, or of the lab's guarantees)."""

    http_status = 409


class InfeasibleGuarantees(Conflict, ValueError):
    """The guarantees cannot all be met with the pools' capacity; the message names the pools and nodes."""

    def __init__(self, message: str, nodes: list[str], pools: list[str]):
        self.nodes = nodes
        self.pools = pools
        super().__init__(message)


class MissingExtra(UserError):
    """A command needs an optional part of fairshare that is not installed; says what to install."""

    def __init__(self, command: str | None, *extras: str):
        self.command = command
        self.extras = extras
        which = f"the {' and '.join(extras)} extra" + ("s" if len(extras) > 1 else "")
        what = f"`{command}`" if command else "this command"
        super().__init__(f"{what} needs {which}: pip install 'fairshare[{','.join(extras)}]'")


class Unavailable(FairshareError):
    """Not the user's input: a database, scheduler or server that cannot be reached."""

    http_status = 503


class InternalError(FairshareError):
    """Not the user's input: a bug, or a numerically extreme scenario."""


class SolverError(InternalError, RuntimeError):
    """The LP solver stopped without an answer."""

    http_status = 503

    def report_lines(self) -> list[str]:
        return [
            f"the LP solver could not finish ({self}). This is a fairshare bug or a numerically extreme "
            "scenario; please report it with the scenario file."
        ]
