"""POST /rounds/{id}/whatif: the web's what-if through the API, same edits, same answer, nothing saved."""

from __future__ import annotations

from typing import Any

import pytest
from tests.service.conftest import Lab

from fairshare import workflow as wf
from fairshare.scenario import Priority
from fairshare.service.ops import whatif
from fairshare.store.db import session_factory

CHAIR = wf.Actor("chair", (wf.Grant(wf.Role.committee, "lab"),))


def make_round(lab: Lab, *steps: str) -> int:
    """A round where llama, opt and genai each asked for more than their share, taken through `steps`."""
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "r1"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    for who, key, team in (("llama-lead", "l1", "llama"), ("opt-lead", "o1", "opt"), ("genai-lead", "g1", "genai")):
        lab.call(who, "POST", f"/rounds/{rid}/requests", 201, json={"id": key, "team": team, "gpus": 150})
    for step in steps:
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    return rid


@pytest.fixture
def proposed(lab: Lab) -> int:
    return make_round(lab, "close", "propose")


def what_if(lab: Lab, who: str, rid: int, body: dict[str, Any], expect: int) -> Any:
    return lab.call(who, "POST", f"/rounds/{rid}/whatif", expect, json=body).json()


def test_dropping_a_request_shows_who_gains_and_who_loses(lab: Lab, proposed: int) -> None:
    changes = what_if(lab, "chair", proposed, {"drop": ["o1"]}, 200)["changes"]
    teams = {c["name"]: c for c in changes if c["kind"] == "team"}
    assert teams["opt"]["after"] == 0 and teams["opt"]["delta"] == -teams["opt"]["before"] < 0
    assert teams["llama"]["delta"] > 0  # opt's share goes to its sibling first
    assert [c["kind"] for c in changes] == sorted((c["kind"] for c in changes), key=lambda k: k != "team")
    assert all(c["delta"] == c["after"] - c["before"] != 0 for c in changes)


def test_the_answer_is_what_the_web_page_shows(lab: Lab, proposed: int) -> None:
    """The page and the API share the edits and the comparison (service.ops.whatif)."""
    body = {"weights": {"llama": 4}, "capacity": {"h100-east": 16}, "priorities": {"g1": "critical"}}
    api = what_if(lab, "chair", proposed, body, 200)["changes"]
    edits = whatif.Edits(weights={"llama": 4.0}, capacity={"h100-east": 16}, priorities={"g1": Priority.critical})
    with session_factory(lab.engine)() as session:
        changes = whatif.compare(whatif.start(session, CHAIR, proposed), edits)
    assert api == [
        {"kind": c.kind, "name": c.name, "before": c.before, "after": c.after, "delta": c.delta}
        for c in changes
        if c.delta != 0
    ]
    assert api  # the edits move something


def test_nothing_is_saved(lab: Lab, proposed: int) -> None:
    def state() -> tuple[Any, Any, Any]:
        return (
            lab.call("chair", "GET", f"/rounds/{proposed}/runs", 200).json(),
            lab.call("chair", "GET", f"/rounds/{proposed}/allocation", 200).json(),
            lab.call("chair", "GET", "/audit", 200).json()["total"],
        )

    before = state()
    what_if(lab, "chair", proposed, {"drop": ["l1", "o1"], "capacity": {"a100-west": 0}}, 200)
    assert state() == before


def test_no_edits_move_nothing(lab: Lab, proposed: int) -> None:
    assert what_if(lab, "chair", proposed, {}, 200) == {"changes": []}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"drop": ["nope"]}, "drop.nope: the round has no live request 'nope'"),
        ({"weights": {"nope": 2}}, "weights.nope: the round has no org node 'nope'"),
        ({"capacity": {"h100-west": 2}}, "capacity.h100-west: the round has no pool 'h100-west'"),
        ({"priorities": {"nope": "high"}}, "priorities.nope: the round has no live request 'nope'"),
    ],
)
def test_a_name_the_round_does_not_have_is_refused_by_name(
    lab: Lab, proposed: int, body: dict[str, Any], says: str
) -> None:
    assert says in what_if(lab, "chair", proposed, body, 422)["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"weights": {"llama": 0}},
        {"weights": {"llama": 1e7}},
        {"capacity": {"h100-east": -1}},
        {"priorities": {"l1": "urgent"}},
        {"drop": "l1"},
        {"weight": {"llama": 2}},
    ],
)
def test_a_value_out_of_range_is_refused_naming_its_field(lab: Lab, proposed: int, body: dict[str, Any]) -> None:
    detail = what_if(lab, "chair", proposed, body, 422)["detail"]
    assert detail and all(d["loc"][0] == "body" for d in detail)


def test_a_withdrawn_request_cannot_be_dropped(lab: Lab) -> None:
    rid = make_round(lab)
    req = lab.call("opt-lead", "GET", f"/rounds/{rid}/requests?team=opt", 200).json()["items"][0]
    lab.call("opt-lead", "POST", f"/requests/{req['id']}/withdraw", 200, json={"version": req["version"]})
    assert "no live request 'o1'" in what_if(lab, "chair", rid, {"drop": ["o1"]}, 422)["detail"]


def test_a_proposal_is_the_committees_until_it_is_published(lab: Lab, proposed: int) -> None:
    refused = what_if(lab, "llama-lead", proposed, {"drop": ["o1"]}, 403)
    assert refused["detail"] == "what-ifs on an unpublished round are for the committee"
    what_if(lab, "research-committee", proposed, {"drop": ["o1"]}, 200)
    lab.call("chair", "POST", f"/rounds/{proposed}/publish", 200)
    assert what_if(lab, "llama-lead", proposed, {"drop": ["o1"]}, 200)["changes"]


def test_an_unknown_round_is_not_found(lab: Lab) -> None:
    assert what_if(lab, "chair", 99, {}, 404)["detail"] == "no round with id 99"


def test_a_call_without_a_token_is_unauthorised(lab: Lab, proposed: int) -> None:
    assert lab.client.post(f"/api/v1/rounds/{proposed}/whatif", json={}).status_code == 401


ADDITIONS: dict[str, Any] = {  # the edits the web page offers besides weights, capacities, priorities, drops
    "new_pools": [{"name": "h100-paris", "gpu": "H100", "site": "paris", "gpus": 64}],
    "guarantees": {"genai": {"H100": 40}},
    "limits": {"llama": {"A100": 20}},
    "minimums": {"o1": 120, "l1": None},
}


def test_the_page_s_additions_are_accepted_and_answer_as_the_page_does(lab: Lab, proposed: int) -> None:
    """A new pool at a new site, a guarantee, a limit and minimums: the same comparison as the web page's."""
    api = what_if(lab, "chair", proposed, ADDITIONS, 200)["changes"]
    edits = whatif.Edits(
        new_pools=whatif.new_pools(ADDITIONS["new_pools"]),
        guarantees={"genai": {"H100": 40}},
        limits={"llama": {"A100": 20}},
        minimums={"o1": 120, "l1": None},
    )
    with session_factory(lab.engine)() as session:
        changes = whatif.compare(whatif.start(session, CHAIR, proposed), edits)
    assert api == [
        {"kind": c.kind, "name": c.name, "before": c.before, "after": c.after, "delta": c.delta}
        for c in changes
        if c.delta != 0
    ]
    after = {(c["kind"], c["name"]): c["after"] for c in api}
    assert sum(a for (kind, _), a in after.items() if kind == "team") == 64 + 128 + 64  # the Paris pool is used
    assert after["request", "o1"] == 0  # 120 is more than o1 can get: not funded below its new minimum


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"guarantees": {"nope": {"H100": 1}}}, "guarantees.nope: the round has no org node 'nope'"),
        ({"limits": {"opt": {"B200": 8}}}, "limits.opt.B200: the round has no GPU type 'B200'"),
        ({"minimums": {"o1": 151}}, "minimums.o1: a minimum of 151 is above the 150 GPUs it asks"),
        ({"minimums": {"nope": 1}}, "minimums.nope: the round has no live request 'nope'"),
        (
            {"new_pools": [{"name": "h100-east", "gpu": "H100", "site": "east", "gpus": 8}]},
            "new_pools[0].name: the round already has a pool named 'h100-east'",
        ),
    ],
)
def test_an_addition_naming_what_the_round_does_not_have_is_refused_by_field(
    lab: Lab, proposed: int, body: dict[str, Any], says: str
) -> None:
    assert says in what_if(lab, "chair", proposed, body, 422)["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"new_pools": [{"name": "p", "gpu": "H100", "site": "paris", "gpus": 0}]}, "gpus"),
        ({"new_pools": [{"name": "p", "gpu": "H100", "gpus": 8}]}, "site"),
        ({"guarantees": {"opt": {"H100": -1}}}, "guarantees"),
        ({"limits": {"opt": {"H100": "many"}}}, "limits"),
        ({"minimums": {"o1": 0}}, "minimums"),
    ],
)
def test_a_bad_addition_is_a_422_naming_its_field(lab: Lab, proposed: int, body: dict[str, Any], field: str) -> None:
    detail = what_if(lab, "chair", proposed, body, 422)["detail"]
    assert detail and all(d["loc"][0] == "body" and field in d["loc"] for d in detail)


def test_the_openapi_request_body_gains_only_the_additions(lab: Lab) -> None:
    schemas = lab.client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["WhatIfIn"]["properties"]) == {
        "drop", "weights", "capacity", "priorities", "new_pools", "guarantees", "limits", "minimums",
    }  # fmt: skip
    assert set(schemas["NewPoolIn"]["properties"]) == {"name", "gpu", "site", "gpus"}
    assert set(schemas["NewPoolIn"]["required"]) == {"name", "gpu", "site", "gpus"}
