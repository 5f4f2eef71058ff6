"""One use case, one transaction: the rule every state change in `fairshare.service.ops` follows.

A use case (a function decorated with `use_case`) commits before it returns and rolls back before
it raises, so its callers (API routes, web pages, the CLI) never commit or roll back: a page can
catch the error, show it beside the form and read the database again.  A use case called by
another use case joins the caller's transaction; only the outermost one commits.  Work that must
wait for the commit (pushing a published allocation into the schedulers) is queued with
`after_commit` and runs once the outermost use case has committed, never after a rollback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.orm import Session

P = ParamSpec("P")
R = TypeVar("R")
_INSIDE = "fairshare_use_case"
_AFTER = "fairshare_after_commit"


def use_case(fn: Callable[Concatenate[Session, P], R]) -> Callable[Concatenate[Session, P], R]:
    """Run `fn(session, ...)` as one transaction: commit on return, roll back on any exception."""

    @functools.wraps(fn)
    def run(session: Session, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if session.info.get(_INSIDE):  # part of a larger use case: its caller commits
            return fn(session, *args, **kwargs)
        session.info[_INSIDE] = True
        try:
            result = fn(session, *args, **kwargs)
            session.commit()
        except BaseException:
            session.info.pop(_AFTER, None)
            session.rollback()
            raise
        finally:
            session.info.pop(_INSIDE, None)
        for callback in session.info.pop(_AFTER, []):
            callback()
        return result

    return run


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the current use case has committed (dropped if it rolls back)."""
    session.info.setdefault(_AFTER, []).append(callback)
