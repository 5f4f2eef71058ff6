"""Pushes into the schedulers and usage read back from them, each recorded in the audit log.

A push happens after the commit that changed the published allocation (`sync_hooks` says which
pushes are configured); one that fails never undoes the publication: the failure is recorded, and
`fairshare sync ...` can retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from fairshare.connectors.source import from_round, not_newest
from fairshare.service.ops.sync_hooks import Hook
from fairshare.service.ops.unit import use_case
from fairshare.store.repo import audit

log = logging.getLogger("fairshare.sync")


@use_case
def record_sync(session: Session, actor: str, target: str, round_id: int, after: dict[str, Any]) -> None:
    """Who pushed which round into which scheduler, and how it went."""
    audit(session, actor, f"sync.{target}", "round", round_id, None, after)


def push_round(hooks: Sequence[tuple[str, Hook]], sessions: Callable[[], Session], round_id: int, actor: str) -> None:
    """Each configured push in turn, each on a session of its own and recorded as `sync.<target>`.  Only the
    newest published (or final) round is pushed: a change to an older one (a late ruling) is recorded as
    not pushed, with the reason, so the schedulers keep the round in force."""
    for name, hook in hooks:
        with sessions() as session:
            why = not_newest(session, round_id)
            if why is not None:
                log.info("sync %s of round %s not pushed: %s", name, round_id, why)
                record_sync(session, actor, name, round_id, {"result": "not pushed", "reason": why})
                continue
            try:
                after = {"result": "ok", **hook(from_round(session, round_id))}
            except Exception as e:  # noqa: BLE001 - any failure is recorded; the publication stands
                log.warning("sync %s of round %s failed: %s", name, round_id, e)
                after = {"result": "failed", "error": f"{type(e).__name__}: {e}"}
            record_sync(session, actor, name, round_id, after)


@use_case
def import_usage(session: Session, actor: str, store: Callable[[Session], dict[str, Any]]) -> dict[str, Any]:
    """Usage read from a scheduler, stored by `store` (which says what it stored, with its `source`),
    with its audit entry, in one transaction."""
    summary = store(session)
    audit(session, actor, "usage.import", "usage", summary["source"], None, summary)
    return summary
