"""A round's history, the input of `policy.history`'s boost, from the rounds published before it.

The engine takes each node's history as an input (`OrgNode.history`); scenario files state it, the
service computes it here with the same definitions as `fairshare health` (`engine.health.with_history`
over `ops.health`'s published rounds).  It is computed once per frozen world, at the round's first
solve, and kept in the world, so every later solve of the round (overrides, rulings, a re-proposal)
and every read of it (health's `why`, previews) sees the same boost; reopening the round drops the
world and with it the history.  A step of a use case: no commit.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from fairshare.engine.health import with_history
from fairshare.scenario import Scenario
from fairshare.service.ops.health import assess, published_rounds
from fairshare.store import models as m

HISTORY_ROUNDS = 12  # published rounds read back; at the default half-life a 12-round-old debt counts 1/16
HISTORY_KEY = "history_from"  # in a round's world: the rounds its nodes' history was computed from


def past_rounds(session: Session, rnd: m.Round) -> list[m.Round]:
    """The published and final rounds before `rnd` (all, while it is unpublished), the newest few."""
    rows = [
        r
        for r in published_rounds(session)
        if r.id != rnd.id
        and (rnd.published_at is None or (r.published_at is not None and r.published_at < rnd.published_at))
    ]
    return rows[-HISTORY_ROUNDS:]


def carried_history(session: Session, rnd: m.Round, scenario: Scenario, *, keep: bool = True) -> Scenario:
    """`scenario` (the round's) with its nodes' history when its policy carries debt, else unchanged.
    With `keep`, a frozen world keeps the history (computed only when it has none yet)."""
    if scenario.policy.history is None:
        return scenario
    world = rnd.world
    if world is not None and HISTORY_KEY in world:  # computed at an earlier solve: round_scenario has it
        return scenario
    rows = past_rounds(session, rnd)
    if rows:
        now = max(r.published_at or r.created_at for r in rows)  # usage plays no part in the boost
        scenario = with_history(scenario, assess(session, rows, now))
    if keep and world is not None:
        org = scenario.org.model_dump(mode="json", exclude_defaults=True)
        rnd.world = {**world, "org": org, HISTORY_KEY: [r.name for r in rows]}  # a new dict: the JSON column sees it
    return scenario
