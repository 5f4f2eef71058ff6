"""Previews: who gains and who loses, per team and per request, before a committee's action is made.

An override, an override's removal, a ruling and a re-propose are each planned (the engine's
answer, computed without saving anything) before they are made; a preview is that plan shown
instead of saved, with the reason it would be refused, if it would be.  The same checks decide
both, so a preview says exactly what the action would do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fairshare import workflow as wf
from fairshare.engine import Allocation
from fairshare.errors import Conflict
from fairshare.store import models as m


class OutsideSubtree(Conflict):
    """The action cannot be absorbed inside the subtree its committee governs (HTTP 409)."""


class DecidedAbove(Conflict):
    """The action would replace or undo a decision of a committee above the actor's (HTTP 409)."""


@dataclass(frozen=True)
class Moved:
    """GPUs and effective GPUs of one team or request, before and after."""

    kind: str  # "team" | "request"
    name: str
    gpus_before: int
    gpus_after: int
    effective_before: float
    effective_after: float

    @property
    def delta(self) -> int:
        return self.gpus_after - self.gpus_before


@dataclass(frozen=True)
class Preview:
    """What an action would change; `refused`: why it would be refused (None: it would be made)."""

    changes: list[Moved] = field(default_factory=list)
    refused: str | None = None
    scope: str | None = None  # the node whose subtree absorbs it


Holding = Mapping[str, tuple[str, int, float]]
"""request id -> (team, GPUs, effective GPUs)"""


def holding_of_rows(rows: Iterable[m.RequestResult]) -> dict[str, tuple[str, int, float]]:
    return {r.key: (r.team, int(r.total), float(r.effective)) for r in rows}


def holding_of(alloc: Allocation) -> dict[str, tuple[str, int, float]]:
    return {r.id: (r.team, int(round(r.total)), float(r.effective)) for r in alloc.requests}


def moves(before: Holding, after: Holding) -> list[Moved]:
    """Teams, then requests, whose GPUs or effective GPUs change; the biggest moves first."""
    out: list[Moved] = []
    teams: dict[str, list[float]] = {}
    for side, holding in ((0, before), (1, after)):
        for team, gpus, eff in holding.values():
            acc = teams.setdefault(team, [0, 0, 0.0, 0.0])
            acc[side] += gpus
            acc[2 + side] += eff
    for team, (gb, ga, eb, ea) in teams.items():
        out.append(Moved("team", team, int(gb), int(ga), round(eb, 3), round(ea, 3)))
    for rid in dict.fromkeys([*before, *after]):
        _, gb, eb = before.get(rid, ("", 0, 0.0))
        _, ga, ea = after.get(rid, ("", 0, 0.0))
        out.append(Moved("request", rid, gb, ga, round(eb, 3), round(ea, 3)))
    changed = [c for c in out if c.delta != 0 or abs(c.effective_after - c.effective_before) > 1e-6]
    return sorted(
        changed, key=lambda c: (c.kind != "team", -abs(c.delta), -abs(c.effective_after - c.effective_before), c.name)
    )


def authority(actor: wf.Actor, tree: wf.OrgTree, team: str) -> str | None:
    """The node whose committee `actor` acts as for `team`: the highest one on the team's path it sits on
    (the root for an admin); None if it sits on none."""
    path = tree.path_to_root(team)
    if actor.is_admin:
        return path[-1]
    for node in reversed(path):
        if any(g.role is wf.Role.committee and g.node == node for g in actor.grants):
            return node
    return None


def check_not_above(tree: wf.OrgTree, mine: str | None, row: m.Override, what: str) -> str | None:
    """Why `mine`'s committee may not `what` the override `row`, if it was made by a committee above."""
    theirs = row.authority
    if mine is None or theirs is None or theirs == mine or not tree.contains(theirs, mine):
        return None
    made = f"ruling of appeal {row.source.split(':', 1)[1]}" if row.source.startswith("appeal:") else "override"
    return (
        f"cannot {what} override {row.id} ({made} by {row.author}, committee of {theirs!r}): it was made by a "
        f"committee above yours ({mine!r}); ask the committee of {theirs!r}"
    )


def outside(tree: wf.OrgTree, governed: str, before: Holding, after: Holding) -> str | None:
    """Why an action moving `before` to `after` leaves the subtree of `governed`, if it does."""
    moved_outside = 0
    inside_delta = 0
    for rid in dict.fromkeys([*before, *after]):
        team, gb, _ = before.get(rid) or after[rid]
        ga = after.get(rid, (team, 0, 0.0))[1]
        if tree.contains(governed, team):
            inside_delta += ga - gb
        else:
            moved_outside += abs(ga - gb)
    if moved_outside == 0:
        return None
    above = tree.parent(governed)
    who = f"the committee of {above!r} can make it" if above else "no committee can make it"
    if inside_delta > 0:
        amount = f"{inside_delta:,} GPUs would have to come from outside it"
    elif inside_delta < 0:
        amount = f"{-inside_delta:,} GPUs would have to go outside it"
    else:
        amount = f"{moved_outside // 2 or moved_outside:,} GPUs of requests outside it would move"
    return f"this change cannot be absorbed inside {governed!r}, the subtree its committee governs: {amount}; {who}"
