"""One use case, one transaction (service.ops.unit): the rule every state change of the service follows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from fairshare.service.ops.unit import after_commit, use_case
from fairshare.store import models as m
from fairshare.store.db import make_engine, session_factory, upgrade
from fairshare.store.repo import audit


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'unit.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def stored(engine: Engine) -> list[str]:
    """The actions in the audit log, as another connection sees them (committed only)."""
    with session_factory(engine)() as other:
        return list(other.scalars(select(m.AuditEntry.action).order_by(m.AuditEntry.id)))


@use_case
def note(session: Session, action: str, fail: bool = False) -> str:
    audit(session, "test", action, "test", 1)
    session.flush()
    if fail:
        raise RuntimeError("refused")
    return action


@use_case
def note_twice(session: Session, fail_after: bool = False) -> None:
    note(session, "first")
    note(session, "second")
    if fail_after:
        raise RuntimeError("refused after both")


def test_a_use_case_commits_before_it_returns(engine: Engine) -> None:
    with session_factory(engine)() as session:
        assert note(session, "one") == "one"
        assert stored(engine) == ["one"]


def test_a_use_case_that_fails_rolls_back_and_leaves_the_session_usable(engine: Engine) -> None:
    with session_factory(engine)() as session:
        with pytest.raises(RuntimeError, match="refused"):
            note(session, "lost", fail=True)
        assert stored(engine) == []
        assert session.scalar(select(func.count()).select_from(m.AuditEntry)) == 0  # a page reads on after an error
        note(session, "kept")
    assert stored(engine) == ["kept"]


def test_a_use_case_inside_another_joins_its_transaction(engine: Engine) -> None:
    with session_factory(engine)() as session:
        with pytest.raises(RuntimeError, match="after both"):
            note_twice(session, fail_after=True)
        assert stored(engine) == []  # the inner ones did not commit on their own
        note_twice(session)
    assert stored(engine) == ["first", "second"]


def test_work_after_commit_runs_once_committed_and_never_after_a_rollback(engine: Engine) -> None:
    seen: list[list[str]] = []

    @use_case
    def publish(session: Session, fail: bool) -> None:
        note(session, "publish")
        after_commit(session, lambda: seen.append(stored(engine)))
        if fail:
            raise RuntimeError("refused")

    with session_factory(engine)() as session:
        with pytest.raises(RuntimeError):
            publish(session, fail=True)
        assert seen == []
        publish(session, fail=False)
        assert seen == [["publish"]]  # it saw the committed row
        note(session, "later")
        assert seen == [["publish"]]  # queued work runs once
