"""The workflow rules (fairshare.workflow): round states, roles scoped to subtrees, appeals.

Pure state machine, no database: every legal step from every state gives the right state, every
illegal one is refused with a message that says what is legal; appeals go to the committee of
the team's parent and move one level up at a time, never past the root.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fairshare.workflow import (
    ROUND_STEPS,
    Actor,
    Appeal,
    AppealState,
    Forbidden,
    Grant,
    IllegalTransition,
    OrgTree,
    Role,
    RoundState,
    Ruling,
    allocation_visible,
    check_adjustable,
    check_admin,
    check_appeal,
    check_edit_request,
    check_override,
    check_read_audit,
    check_requests_editable,
    check_rule,
    check_run_round,
    escalate_overdue,
    file_appeal,
    may_see_justification,
    next_steps,
    reappeal,
    round_step,
    rule_appeal,
)

S = RoundState
NOW = dt.datetime(2023, 3, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)

#   lab
#   |-- fair
#   |   |-- llama
#   |   `-- opt
#   `-- genai
#       `-- assistants
TREE = OrgTree({"lab": None, "fair": "lab", "llama": "fair", "opt": "fair", "genai": "lab", "assistants": "genai"})


def actor(role: Role, node: str, name: str = "ann") -> Actor:
    return Actor(name, (Grant(role, node),))


# --- rounds: every step from every state -------------------------------------------------------

# The workflow of the issue: draft -> open -> closed -> proposed -> published -> final, with the
# committee able to re-run the engine (propose again) and to reopen before publishing.
LEGAL: dict[tuple[RoundState, str], RoundState] = {
    (S.draft, "open"): S.open,
    (S.open, "close"): S.closed,
    (S.closed, "reopen"): S.open,
    (S.proposed, "reopen"): S.open,
    (S.closed, "propose"): S.proposed,
    (S.proposed, "propose"): S.proposed,
    (S.proposed, "publish"): S.published,
    (S.published, "finalize"): S.final,
}
LEGAL_FROM = {
    S.draft: ["open"],
    S.open: ["close"],
    S.closed: ["reopen", "propose"],
    S.proposed: ["reopen", "propose", "publish"],
    S.published: ["finalize"],
    S.final: [],
}
STEPS = ["open", "close", "reopen", "propose", "publish", "finalize"]
ALL_PAIRS = [(state, step) for state in S for step in STEPS]


def test_the_step_table_covers_exactly_the_documented_steps() -> None:
    assert set(ROUND_STEPS) == set(STEPS)


@pytest.mark.parametrize(("state", "step"), [p for p in ALL_PAIRS if p in LEGAL], ids=lambda v: getattr(v, "value", v))
def test_legal_round_step_leads_to_its_target(state: RoundState, step: str) -> None:
    assert round_step(state, step, now=NOW) is LEGAL[(state, step)]


@pytest.mark.parametrize(
    ("state", "step"), [p for p in ALL_PAIRS if p not in LEGAL], ids=lambda v: getattr(v, "value", v)
)
def test_illegal_round_step_is_refused_naming_the_legal_steps(state: RoundState, step: str) -> None:
    with pytest.raises(IllegalTransition) as e:
        round_step(state, step, now=NOW)
    msg = str(e.value)
    assert step in msg and state.value in msg
    for legal in LEGAL_FROM[state]:
        assert legal in msg
    for other in set(STEPS) - set(LEGAL_FROM[state]) - {step}:
        assert f" {other}" not in msg.split("legal steps now:")[1], msg


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.value)
def test_next_steps_lists_the_legal_steps_in_workflow_order(state: RoundState) -> None:
    assert next_steps(state) == LEGAL_FROM[state]


def test_a_final_round_has_no_legal_step_and_says_it_is_final() -> None:
    with pytest.raises(IllegalTransition, match="final"):
        round_step(S.final, "reopen", now=NOW)


def test_unknown_step_is_refused_naming_the_known_steps() -> None:
    with pytest.raises(IllegalTransition) as e:
        round_step(S.open, "approve", now=NOW)
    assert "approve" in str(e.value)
    assert all(step in str(e.value) for step in STEPS)


def test_the_whole_round_walks_draft_to_final() -> None:
    state = S.draft
    for step in ["open", "close", "propose", "reopen", "close", "propose", "propose", "publish"]:
        state = round_step(state, step, now=NOW)
    assert state is S.published
    assert round_step(state, "finalize", now=NOW + DAY, appeal_window_ends=NOW + HOUR) is S.final


# --- finalize: the appeal window and pending appeals --------------------------------------------


def test_finalize_is_refused_while_the_appeal_window_is_open() -> None:
    ends = NOW + DAY
    with pytest.raises(IllegalTransition, match="appeal window") as e:
        round_step(S.published, "finalize", now=NOW, appeal_window_ends=ends)
    assert ends.isoformat() in str(e.value)


def test_finalize_is_refused_one_second_before_the_window_ends_and_allowed_when_it_ends() -> None:
    ends = NOW + DAY
    with pytest.raises(IllegalTransition):
        round_step(S.published, "finalize", now=ends - dt.timedelta(seconds=1), appeal_window_ends=ends)
    assert round_step(S.published, "finalize", now=ends, appeal_window_ends=ends) is S.final


def test_finalize_is_refused_while_appeals_await_a_ruling() -> None:
    with pytest.raises(IllegalTransition, match="2 appeal"):
        round_step(S.published, "finalize", now=NOW + DAY, appeal_window_ends=NOW, pending_appeals=2)


def test_finalize_without_a_window_and_no_pending_appeals_is_allowed() -> None:
    assert round_step(S.published, "finalize", now=NOW) is S.final
    assert round_step(S.published, "finalize") is S.final


def test_finalize_without_the_time_cannot_skip_the_appeal_window_check() -> None:
    with pytest.raises(IllegalTransition, match="appeal window"):
        round_step(S.published, "finalize", appeal_window_ends=NOW + DAY)


def test_window_and_pending_appeals_do_not_block_other_steps() -> None:
    assert round_step(S.proposed, "publish", now=NOW, appeal_window_ends=NOW + DAY, pending_appeals=3) is S.published


# --- what each state allows -------------------------------------------------------------------


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.value)
def test_requests_are_editable_only_while_the_round_is_open(state: RoundState) -> None:
    if state is S.open:
        check_requests_editable(state)
    else:
        with pytest.raises(IllegalTransition, match=state.value):
            check_requests_editable(state)


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.value)
def test_a_proposal_is_adjustable_only_while_proposed(state: RoundState) -> None:
    if state is S.proposed:
        check_adjustable(state)
    else:
        with pytest.raises(IllegalTransition, match=state.value):
            check_adjustable(state)


@pytest.mark.parametrize("state", list(S), ids=lambda s: s.value)
def test_allocations_are_the_committees_when_proposed_and_everyones_once_published(state: RoundState) -> None:
    member, committee = actor(Role.member, "llama"), actor(Role.committee, "fair")
    assert allocation_visible(state, member) is (state in (S.published, S.final))
    assert allocation_visible(state, committee) is (state in (S.proposed, S.published, S.final))


# --- roles scoped to subtrees -----------------------------------------------------------------


def test_org_tree_paths_and_subtrees() -> None:
    assert TREE.path_to_root("llama") == ["llama", "fair", "lab"]
    assert TREE.path_to_root("lab") == ["lab"]
    assert TREE.contains("fair", "llama") and TREE.contains("fair", "fair") and TREE.contains("lab", "assistants")
    assert not TREE.contains("llama", "fair") and not TREE.contains("opt", "llama")
    assert not TREE.contains("fair", "assistants")


CHECKS = {
    "run_round": lambda a, node: check_run_round(a, TREE, node),
    "edit_request": lambda a, node: check_edit_request(a, TREE, node),
    "override": lambda a, node: check_override(a, TREE, node),
    "appeal": lambda a, node: check_appeal(a, TREE, node),
    "rule": lambda a, node: check_rule(a, TREE, node),
}
NODES = ["lab", "fair", "llama", "opt", "genai", "assistants"]
FAIR_SUBTREE = {"fair", "llama", "opt"}
# (role, granted on) -> check -> nodes where it is allowed
ALLOWED: dict[tuple[Role, str], dict[str, set[str]]] = {
    (Role.member, "llama"): {"edit_request": {"llama"}},
    (Role.lead, "llama"): {"edit_request": {"llama"}, "appeal": {"llama"}},
    (Role.lead, "fair"): {"edit_request": FAIR_SUBTREE, "appeal": FAIR_SUBTREE},
    (Role.committee, "fair"): {"run_round": FAIR_SUBTREE, "override": FAIR_SUBTREE, "rule": FAIR_SUBTREE},
    (Role.committee, "lab"): {"run_round": set(NODES), "override": set(NODES), "rule": set(NODES)},
    (Role.admin, "assistants"): {check: set(NODES) for check in CHECKS},
}
MATRIX = [(grant, check, node) for grant in ALLOWED for check in CHECKS for node in NODES]


@pytest.mark.parametrize(("grant", "check", "node"), MATRIX, ids=[f"{r.value}@{g}-{c}-{n}" for (r, g), c, n in MATRIX])
def test_role_checks_allow_exactly_their_subtree(grant: tuple[Role, str], check: str, node: str) -> None:
    who = actor(*grant)
    if node in ALLOWED[grant].get(check, set()):
        CHECKS[check](who, node)
    else:
        with pytest.raises(Forbidden) as e:
            CHECKS[check](who, node)
        assert "ann" in str(e.value) and repr(node) in str(e.value)


def test_a_grant_covers_its_subtree_but_not_its_parent_or_siblings() -> None:
    lead = actor(Role.lead, "llama")
    assert lead.holds([Role.lead], "llama", TREE)
    assert not lead.holds([Role.lead], "fair", TREE)  # parent
    assert not lead.holds([Role.lead], "opt", TREE)  # sibling
    assert not lead.holds([Role.committee], "llama", TREE)  # another role on the same node


def test_several_grants_add_up() -> None:
    both = Actor("bo", (Grant(Role.lead, "llama"), Grant(Role.committee, "genai")))
    check_appeal(both, TREE, "llama")
    check_rule(both, TREE, "assistants")
    with pytest.raises(Forbidden):
        check_rule(both, TREE, "llama")
    with pytest.raises(Forbidden):
        check_appeal(both, TREE, "assistants")


def test_only_admins_pass_the_admin_check() -> None:
    check_admin(actor(Role.admin, "genai"))
    for role in (Role.member, Role.lead, Role.committee):
        with pytest.raises(Forbidden, match="not an admin"):
            check_admin(actor(role, "lab"))


def test_the_audit_log_is_for_committees_and_admins() -> None:
    check_read_audit(actor(Role.committee, "assistants"))
    check_read_audit(actor(Role.admin, "lab"))
    for role in (Role.member, Role.lead):
        with pytest.raises(Forbidden):
            check_read_audit(actor(role, "lab"))


def test_justifications_are_for_the_team_and_the_committees_above_it() -> None:
    assert may_see_justification(actor(Role.member, "llama"), TREE, "llama")
    assert may_see_justification(actor(Role.lead, "llama"), TREE, "llama")
    assert may_see_justification(actor(Role.committee, "fair"), TREE, "llama")
    assert may_see_justification(actor(Role.admin, "genai"), TREE, "llama")
    assert not may_see_justification(actor(Role.member, "opt"), TREE, "llama")
    assert not may_see_justification(actor(Role.committee, "genai"), TREE, "llama")
    assert not may_see_justification(actor(Role.member, "llama"), TREE, "fair")


# --- appeals: filing ------------------------------------------------------------------------------


def test_an_appeal_goes_to_the_committee_of_the_teams_parent() -> None:
    a = file_appeal(TREE, "llama", S.published, NOW, NOW + DAY, 2 * HOUR)
    assert a == Appeal(AppealState.open, "fair", NOW + 2 * HOUR, 0)
    assert file_appeal(TREE, "assistants", S.published, NOW, None, HOUR).handler == "genai"
    assert file_appeal(TREE, "fair", S.published, NOW, None, HOUR).handler == "lab"


def test_an_appeal_at_the_root_stays_with_the_roots_committee() -> None:
    assert file_appeal(TREE, "lab", S.published, NOW, None, HOUR).handler == "lab"


@pytest.mark.parametrize("state", [s for s in S if s is not S.published], ids=lambda s: s.value)
def test_appeals_are_accepted_only_on_a_published_round(state: RoundState) -> None:
    with pytest.raises(IllegalTransition, match="published") as e:
        file_appeal(TREE, "llama", state, NOW, NOW + DAY, HOUR)
    assert state.value in str(e.value)


def test_appeals_are_accepted_until_the_window_ends_and_not_at_or_after_it() -> None:
    ends = NOW + DAY
    assert file_appeal(TREE, "llama", S.published, ends - dt.timedelta(seconds=1), ends, HOUR).state is AppealState.open
    for late in (ends, ends + HOUR):
        with pytest.raises(IllegalTransition, match="window closed") as e:
            file_appeal(TREE, "llama", S.published, late, ends, HOUR)
        assert ends.isoformat() in str(e.value)


# --- appeals: rulings -----------------------------------------------------------------------------

OPEN = Appeal(AppealState.open, "fair", NOW + DAY, 0)


@pytest.mark.parametrize(
    ("ruling", "amount", "state"),
    [
        (Ruling.grant, 120, AppealState.granted),
        (Ruling.grant, None, AppealState.granted),
        (Ruling.partial, 101, AppealState.partial),
        (Ruling.partial, 119, AppealState.partial),
        (Ruling.reject, None, AppealState.rejected),
    ],
    ids=["grant", "grant-default", "partial-low", "partial-high", "reject"],
)
def test_a_ruling_closes_the_appeal_with_its_outcome(ruling: Ruling, amount: int | None, state: AppealState) -> None:
    ruled = rule_appeal(OPEN, ruling, amount, asked=120, current=100)
    assert ruled.state is state
    assert (ruled.handler, ruled.deadline, ruled.escalations) == (OPEN.handler, OPEN.deadline, OPEN.escalations)


@pytest.mark.parametrize("amount", [100, 120, 99, 121, 0])
def test_a_partial_grant_must_lie_strictly_between_current_and_asked(amount: int) -> None:
    with pytest.raises(IllegalTransition, match="strictly between") as e:
        rule_appeal(OPEN, Ruling.partial, amount, asked=120, current=100)
    assert "100" in str(e.value) and "120" in str(e.value)


def test_a_partial_ruling_needs_an_amount() -> None:
    with pytest.raises(IllegalTransition, match="amount"):
        rule_appeal(OPEN, Ruling.partial, None, asked=120, current=100)


@pytest.mark.parametrize(
    "done", [AppealState.granted, AppealState.partial, AppealState.rejected], ids=lambda s: s.value
)
@pytest.mark.parametrize("ruling", list(Ruling), ids=lambda r: r.value)
def test_an_appeal_cannot_be_ruled_on_twice(done: AppealState, ruling: Ruling) -> None:
    ruled = Appeal(done, "fair", NOW + DAY, 0)
    with pytest.raises(IllegalTransition, match=f"already {done.value}"):
        rule_appeal(ruled, ruling, 110, asked=120, current=100)


# --- appeals: escalation when overdue -----------------------------------------------------------


def test_an_appeal_is_not_escalated_before_its_deadline() -> None:
    assert escalate_overdue(OPEN, TREE, OPEN.deadline - dt.timedelta(seconds=1), HOUR) is None


@pytest.mark.parametrize("late", [dt.timedelta(0), 3 * DAY], ids=["at-deadline", "days-late"])
def test_an_overdue_appeal_goes_one_level_up_with_a_new_deadline(late: dt.timedelta) -> None:
    now = OPEN.deadline + late
    up = escalate_overdue(OPEN, TREE, now, 2 * HOUR)
    assert up == Appeal(AppealState.open, "lab", now + 2 * HOUR, 1)


def test_escalation_from_a_leafs_parent_climbs_one_level_at_a_time() -> None:
    a = Appeal(AppealState.open, "genai", NOW, 3)
    up = escalate_overdue(a, TREE, NOW, HOUR)
    assert up is not None and (up.handler, up.escalations) == ("lab", 4)


def test_an_overdue_appeal_at_the_root_stays_where_it_is() -> None:
    at_root = Appeal(AppealState.open, "lab", NOW, 1)
    assert escalate_overdue(at_root, TREE, NOW + DAY, HOUR) is None


@pytest.mark.parametrize(
    "done", [AppealState.granted, AppealState.partial, AppealState.rejected], ids=lambda s: s.value
)
def test_a_ruled_appeal_is_never_escalated(done: AppealState) -> None:
    assert escalate_overdue(Appeal(done, "fair", NOW, 0), TREE, NOW + DAY, HOUR) is None


# --- appeals: appealing again ---------------------------------------------------------------------


@pytest.mark.parametrize("done", [AppealState.rejected, AppealState.partial], ids=lambda s: s.value)
def test_a_rejected_or_partial_appeal_can_be_appealed_one_level_up(done: AppealState) -> None:
    again = reappeal(Appeal(done, "fair", NOW, 0), TREE, NOW + DAY, 4 * HOUR)
    assert again == Appeal(AppealState.open, "lab", NOW + DAY + 4 * HOUR, 1)


@pytest.mark.parametrize("state", [AppealState.open, AppealState.granted], ids=lambda s: s.value)
def test_an_open_or_granted_appeal_cannot_be_appealed_again(state: AppealState) -> None:
    with pytest.raises(IllegalTransition, match=state.value):
        reappeal(Appeal(state, "fair", NOW, 0), TREE, NOW, HOUR)


def test_a_ruling_at_the_root_cannot_be_appealed_again() -> None:
    with pytest.raises(IllegalTransition, match="root") as e:
        reappeal(Appeal(AppealState.rejected, "lab", NOW, 1), TREE, NOW, HOUR)
    assert "'lab'" in str(e.value)


# --- any sequence of escalations and re-appeals climbs the path to the root -----------------------


@st.composite
def trees(draw) -> OrgTree:
    """A random tree: node k's parent is one of the nodes before it."""
    n = draw(st.integers(1, 9))
    parents: dict[str, str | None] = {"n0": None}
    for k in range(1, n):
        parents[f"n{k}"] = f"n{draw(st.integers(0, k - 1))}"
    return OrgTree(parents)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees(), st.data(), st.lists(st.sampled_from(["wait", "escalate", "reject", "partial", "grant"]), max_size=12))
def test_escalations_and_reappeals_climb_strictly_up_and_stop_at_the_root(
    tree: OrgTree, data: st.DataObject, moves: list[str]
) -> None:
    team = data.draw(st.sampled_from(sorted(tree.parents)))
    path = tree.path_to_root(team)
    handlers = path[1:] or path  # the parent first, ..., the root; the root itself for the root
    rt = HOUR
    now = NOW
    a = file_appeal(tree, team, S.published, now, None, rt)
    level = 0
    assert a.handler == handlers[0]
    for move in moves:
        at_root = tree.parent(a.handler) is None
        if move == "wait":  # not yet overdue: nothing moves
            assert escalate_overdue(a, tree, a.deadline - dt.timedelta(seconds=1), rt) is None
            continue
        if move == "escalate":
            now = a.deadline + HOUR
            up = escalate_overdue(a, tree, now, rt)
            if a.state is not AppealState.open or at_root:
                assert up is None
                continue
            assert up is not None
            a, level = up, level + 1
        else:  # rule, then appeal again if the ruling allows it
            if a.state is AppealState.open:
                asked, current = 10, 2
                a = rule_appeal(a, Ruling(move), 5 if move == "partial" else None, asked, current)
            if a.state is AppealState.granted or at_root:
                with pytest.raises(IllegalTransition):
                    reappeal(a, tree, now, rt)
                continue
            a, level = reappeal(a, tree, now, rt), level + 1
            assert a.state is AppealState.open
        assert a.handler == handlers[level], "moved exactly one level up the team's path"
        assert a.escalations == level
        assert a.deadline == now + rt
    assert a.handler in handlers


def test_a_grant_never_gives_less_than_the_team_has() -> None:
    appeal = Appeal(AppealState.open, "fair", NOW)
    with pytest.raises(IllegalTransition, match="cannot give less than the 40 GPUs"):
        rule_appeal(appeal, Ruling.grant, 10, asked=60, current=40)
    assert rule_appeal(appeal, Ruling.grant, 40, asked=60, current=40).state is AppealState.granted
