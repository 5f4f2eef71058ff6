"""The rules of an allocation round: states, who may do what where, and how appeals escalate.

Pure: no database, no clock (callers pass `now`).  The service asks these functions before it
persists anything, so every rule lives here once and is tested without a database.
A refused step raises `IllegalTransition` (HTTP 409) or `Forbidden` (HTTP 403) with a message
that says what would make it legal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum

from fairshare import errors
from fairshare.errors import Conflict


class IllegalTransition(Conflict):
    """The step is not legal in the current state (HTTP 409)."""


Forbidden = errors.Forbidden  # the actor's roles do not cover this step here (HTTP 403)


# --- the organisation tree, as far as the rules need it --------------------------------------


class OrgTree:
    """Parent links of the org tree; scopes are subtrees."""

    def __init__(self, parents: Mapping[str, str | None]):
        self.parents = dict(parents)

    def parent(self, node: str) -> str | None:
        return self.parents[node]

    def path_to_root(self, node: str) -> list[str]:
        """The node, its parent, ... the root."""
        out = []
        cur: str | None = node
        while cur is not None:
            out.append(cur)
            cur = self.parents[cur]
        return out

    def contains(self, scope: str, node: str) -> bool:
        """Is `node` inside the subtree rooted at `scope`?"""
        return scope in self.path_to_root(node)


# --- roles and scopes ---------------------------------------------------------------------------


class Role(str, Enum):
    member = "member"  # submit and edit the team's requests
    lead = "lead"  # a team's requests and appeals
    committee = "committee"  # a subtree's rounds, proposal adjustments and appeal rulings
    admin = "admin"  # everything, everywhere


@dataclass(frozen=True)
class Grant:
    """A role over the subtree rooted at `node`."""

    role: Role
    node: str


@dataclass(frozen=True)
class Actor:
    name: str
    grants: tuple[Grant, ...]

    @property
    def is_admin(self) -> bool:
        return any(g.role is Role.admin for g in self.grants)

    @property
    def is_committee(self) -> bool:
        return self.is_admin or any(g.role is Role.committee for g in self.grants)

    def holds(self, roles: Iterable[Role], node: str, tree: OrgTree) -> bool:
        """Admin, or one of `roles` on a subtree that contains `node`."""
        wanted = set(roles)
        return self.is_admin or any(g.role in wanted and tree.contains(g.node, node) for g in self.grants)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise Forbidden(message)


def check_admin(actor: Actor) -> None:
    _require(actor.is_admin, f"{actor.name} is not an admin; ask an admin to do this")


def check_run_round(actor: Actor, tree: OrgTree, round_node: str) -> None:
    _require(
        actor.holds([Role.committee], round_node, tree),
        f"{actor.name} is not on the committee of {round_node!r}, which runs this round",
    )


def check_edit_request(actor: Actor, tree: OrgTree, team: str) -> None:
    _require(
        actor.holds([Role.member, Role.lead], team, tree),
        f"{actor.name} is not a member or lead of team {team!r}; only its own team may submit or edit its requests",
    )


def check_override(actor: Actor, tree: OrgTree, team: str) -> None:
    _require(
        actor.holds([Role.committee], team, tree), f"{actor.name} is not on a committee whose subtree contains {team!r}"
    )


def check_appeal(actor: Actor, tree: OrgTree, team: str) -> None:
    _require(
        actor.holds([Role.lead], team, tree), f"{actor.name} is not a lead of team {team!r}; only its lead may appeal"
    )


def check_rule(actor: Actor, tree: OrgTree, handler: str) -> None:
    _require(
        actor.holds([Role.committee], handler, tree),
        f"this appeal is with the committee of {handler!r}; {actor.name} is not on it",
    )


def check_read_audit(actor: Actor) -> None:
    _require(actor.is_committee, f"{actor.name} is neither on a committee nor an admin; the audit log is theirs")


def may_see_justification(actor: Actor, tree: OrgTree, team: str) -> bool:
    """Justifications are for the team itself and the committees above it."""
    return actor.holds([Role.member, Role.lead, Role.committee], team, tree)


def may_see_appeal(actor: Actor, tree: OrgTree, team: str, handler: str) -> bool:
    """An appeal's reasons are for the appealing team, the committees over it or over its handler."""
    return actor.holds([Role.member, Role.lead, Role.committee], team, tree) or actor.holds(
        [Role.committee], handler, tree
    )


# --- rounds -------------------------------------------------------------------------------------


class RoundState(str, Enum):
    draft = "draft"
    open = "open"  # requests accepted
    closed = "closed"  # requests frozen; the engine may run
    proposed = "proposed"  # the committee sees the proposal and may adjust it
    published = "published"  # visible to all; appeals accepted
    final = "final"  # the appeal window has ended


# action -> (states it may start from, state it leads to)
ROUND_STEPS: dict[str, tuple[frozenset[RoundState], RoundState]] = {
    "open": (frozenset({RoundState.draft}), RoundState.open),
    "close": (frozenset({RoundState.open}), RoundState.closed),
    "reopen": (frozenset({RoundState.closed, RoundState.proposed}), RoundState.open),
    "propose": (frozenset({RoundState.closed, RoundState.proposed}), RoundState.proposed),
    "publish": (frozenset({RoundState.proposed}), RoundState.published),
    "finalize": (frozenset({RoundState.published}), RoundState.final),
}


def next_steps(state: RoundState) -> list[str]:
    """The steps legal from `state`, in workflow order."""
    return [step for step, (sources, _) in ROUND_STEPS.items() if state in sources]


def round_step(
    state: RoundState,
    step: str,
    *,
    now: dt.datetime | None = None,
    appeal_window_ends: dt.datetime | None = None,
    pending_appeals: int = 0,
) -> RoundState:
    """The state after `step`, or IllegalTransition saying why not."""
    if step not in ROUND_STEPS:
        raise IllegalTransition(f"unknown step {step!r}; steps are {', '.join(ROUND_STEPS)}")
    sources, target = ROUND_STEPS[step]
    if state not in sources:
        legal = ", ".join(next_steps(state)) or "none (the round is final)"
        raise IllegalTransition(f"cannot {step} a round that is {state.value}; legal steps now: {legal}")
    if step == "finalize":
        if appeal_window_ends is not None and now is None:
            raise IllegalTransition(
                f"the appeal window ends at {appeal_window_ends.isoformat()}; "
                "finalize needs the current time to check that it has ended"
            )
        if appeal_window_ends is not None and now is not None and now < appeal_window_ends:
            raise IllegalTransition(
                f"the appeal window is open until {appeal_window_ends.isoformat()}; finalize after it ends"
            )
        if pending_appeals:
            raise IllegalTransition(f"{pending_appeals} appeal(s) still await a ruling; rule on them first")
    return target


def check_requests_editable(state: RoundState) -> None:
    if state is not RoundState.open:
        raise IllegalTransition(
            f"requests can be submitted or edited only while the round is open; it is {state.value}"
        )


def check_adjustable(state: RoundState) -> None:
    if state is not RoundState.proposed:
        raise IllegalTransition(f"a proposal can be adjusted only while the round is proposed; it is {state.value}")


def allocation_visible(state: RoundState, actor: Actor) -> bool:
    """A proposal is the committee's; a published round is everyone's."""
    if state in (RoundState.published, RoundState.final):
        return True
    return state is RoundState.proposed and actor.is_committee


def check_what_if(actor: Actor, state: RoundState) -> None:
    """A what-if shows the round's current allocation beside the changed one: on a round not yet
    published, that is the committee's to see."""
    _require(
        actor.is_committee or state in (RoundState.published, RoundState.final),
        "what-ifs on an unpublished round are for the committee",
    )


# --- appeals ------------------------------------------------------------------------------------


class AppealState(str, Enum):
    open = "open"  # waiting for a ruling by the committee of `handler`
    granted = "granted"
    partial = "partial"
    rejected = "rejected"


class Ruling(str, Enum):
    grant = "grant"
    partial = "partial"
    reject = "reject"


RULED = {Ruling.grant: AppealState.granted, Ruling.partial: AppealState.partial, Ruling.reject: AppealState.rejected}


@dataclass(frozen=True)
class Appeal:
    """Where an appeal stands: with whose committee, until when, after how many escalations."""

    state: AppealState
    handler: str
    deadline: dt.datetime
    escalations: int = 0


def file_appeal(
    tree: OrgTree,
    team: str,
    round_state: RoundState,
    now: dt.datetime,
    window_ends: dt.datetime | None,
    response_time: dt.timedelta,
) -> Appeal:
    """A new appeal goes to the committee owning the team's parent node (the root's own, at the root)."""
    if round_state is not RoundState.published:
        raise IllegalTransition(f"appeals are accepted only on a published round; this one is {round_state.value}")
    if window_ends is not None and now >= window_ends:
        raise IllegalTransition(f"the appeal window closed at {window_ends.isoformat()}")
    handler = tree.parent(team) or team
    return Appeal(AppealState.open, handler, now + response_time)


def rule_appeal(appeal: Appeal, ruling: Ruling, amount: int | None, asked: int, current: int) -> Appeal:
    """A committee's ruling.  grant: the amount asked (or another amount); partial: between what
    the team has and what it asked; reject: no change."""
    if appeal.state is not AppealState.open:
        raise IllegalTransition(f"the appeal is already {appeal.state.value}; only an open appeal can be ruled on")
    if ruling is Ruling.partial:
        if amount is None:
            raise IllegalTransition("a partial ruling needs the amount granted")
        if not current < amount < asked:
            raise IllegalTransition(
                f"a partial grant must lie strictly between the current {current} and the "
                f"{asked} GPUs asked; use grant or reject otherwise"
            )
    if ruling is Ruling.grant and amount is not None and amount < current:
        raise IllegalTransition(
            f"a grant cannot give less than the {current} GPUs the team has; "
            "reject the appeal instead (a committee lowers an allocation with an override)"
        )
    return replace(appeal, state=RULED[ruling])


def escalate_overdue(appeal: Appeal, tree: OrgTree, now: dt.datetime, response_time: dt.timedelta) -> Appeal | None:
    """An open appeal unanswered past its deadline goes one level up; None when nothing changes
    (not overdue, already ruled, or already at the root)."""
    if appeal.state is not AppealState.open or now < appeal.deadline:
        return None
    parent = tree.parent(appeal.handler)
    if parent is None:
        return None
    return Appeal(AppealState.open, parent, now + response_time, appeal.escalations + 1)


def reappeal(appeal: Appeal, tree: OrgTree, now: dt.datetime, response_time: dt.timedelta) -> Appeal:
    """A rejected (or partly granted) appeal, appealed again, goes to the next committee up."""
    if appeal.state not in (AppealState.rejected, AppealState.partial):
        raise IllegalTransition(
            f"only a rejected or partly granted appeal can be appealed again; this one is {appeal.state.value}"
        )
    parent = tree.parent(appeal.handler)
    if parent is None:
        raise IllegalTransition(
            f"the appeal was ruled on at the root ({appeal.handler!r}); there is no higher committee"
        )
    return Appeal(AppealState.open, parent, now + response_time, appeal.escalations + 1)
