"""GET /rounds/{id}/requests/{key}/levers: explain's levers for a round's request, visible as the
allocation is, bounded in time, nothing saved."""

from __future__ import annotations

from typing import Any

import pytest
from tests.service.conftest import Lab

from fairshare import workflow as wf
from fairshare.engine import allocate, levers
from fairshare.scenario import Scenario
from fairshare.service.ops.levers import request_levers
from fairshare.store.db import session_factory

CHAIR = wf.Actor("chair", (wf.Grant(wf.Role.committee, "lab"),))


def make_round(lab: Lab, *steps: str) -> int:
    """llama asks for 150 with a minimum of 70 while its half of research's 128 GPUs is 64: not funded."""
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "r1"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    for who, body in (
        ("llama-lead", {"id": "l1", "team": "llama", "gpus": 150, "min": 70}),
        ("opt-lead", {"id": "o1", "team": "opt", "gpus": 150}),
        ("genai-lead", {"id": "g1", "team": "genai", "gpus": 150}),
    ):
        lab.call(who, "POST", f"/rounds/{rid}/requests", 201, json=body)
    for step in steps:
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    return rid


@pytest.fixture
def proposed(lab: Lab) -> int:
    return make_round(lab, "close", "propose")


def get_levers(lab: Lab, who: str, rid: int, key: str, expect: int) -> Any:
    return lab.call(who, "GET", f"/rounds/{rid}/requests/{key}/levers", expect).json()


def test_a_request_short_of_its_minimum_is_shown_the_fixes(lab: Lab, proposed: int) -> None:
    got = get_levers(lab, "chair", proposed, "l1", 200)
    assert got["request"] == "l1" and got["team"] == "llama" and got["complete"]
    kinds = {(lv["kind"], lv["target"]): lv for lv in got["levers"]}
    minimum = kinds[("minimum", "l1")]
    assert minimum["funded"] and minimum["before"] == 70 and 60 <= minimum["after"] < 70
    team = kinds[("node_weight", "llama")]
    assert team["funded"] and team["after"] > 1 and team["gain"] >= 70
    assert [x["team"] for x in team["losers"]] == ["opt"]  # its sibling pays
    assert all(not lv["after"] for lv in got["no_effect"])
    assert 0 < got["solves"] <= got["bound"]


def test_the_answer_is_the_engines_on_the_rounds_scenario(lab: Lab, proposed: int) -> None:
    api = get_levers(lab, "chair", proposed, "l1", 200)
    scenario = Scenario.model_validate(lab.call("chair", "GET", f"/rounds/{proposed}/scenario", 200).json())
    found = levers(scenario, "l1", allocate(scenario))
    assert [(lv["kind"], lv["target"], lv["after"]) for lv in api["levers"]] == [
        (lv.kind.value, lv.target, lv.after) for lv in found.levers
    ]
    assert [lv["label"] for lv in api["no_effect"]] == [lv.label for lv in found.no_effect]


def test_a_proposal_is_the_committees_until_it_is_published(lab: Lab, proposed: int) -> None:
    refused = get_levers(lab, "llama-lead", proposed, "l1", 403)
    assert "visible to the committee only until it is published" in refused["detail"]
    get_levers(lab, "research-committee", proposed, "l1", 200)
    lab.call("chair", "POST", f"/rounds/{proposed}/publish", 200)
    assert get_levers(lab, "llama-lead", proposed, "l1", 200)["levers"]


def test_an_unknown_request_is_not_found(lab: Lab, proposed: int) -> None:
    assert get_levers(lab, "chair", proposed, "nope", 404)["detail"] == f"no live request 'nope' in round {proposed}"
    assert get_levers(lab, "chair", 99, "l1", 404)["detail"] == "no round with id 99"


def test_a_round_without_a_proposal_has_no_levers_yet(lab: Lab) -> None:
    rid = make_round(lab)
    assert "has no proposal yet" in get_levers(lab, "chair", rid, "l1", 404)["detail"]


def test_nothing_is_saved(lab: Lab, proposed: int) -> None:
    def state() -> tuple[Any, Any, Any]:
        return (
            lab.call("chair", "GET", f"/rounds/{proposed}/runs", 200).json(),
            lab.call("chair", "GET", f"/rounds/{proposed}/allocation", 200).json(),
            lab.call("chair", "GET", "/audit", 200).json()["total"],
        )

    before = state()
    get_levers(lab, "chair", proposed, "l1", 200)
    assert state() == before


def test_the_search_is_bounded_in_time(lab: Lab, proposed: int) -> None:
    with session_factory(lab.engine)() as session:
        _, cut = request_levers(session, CHAIR, proposed, "l1", seconds=0.0)
    assert cut.solves == 0 and not cut.complete and cut.not_searched and not cut.levers


def test_a_request_with_all_it_asked_for_is_satisfied(lab: Lab) -> None:
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "small"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    lab.call("genai-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": "g1", "team": "genai", "gpus": 8})
    for step in ("close", "propose"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    got = get_levers(lab, "chair", rid, "g1", 200)
    assert got["satisfied"] and got["levers"] == [] and got["solves"] == 0
