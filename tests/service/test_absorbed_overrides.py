"""Overrides and granted appeals are absorbed by the request's own branch, and previewed before they are made.

The smallest case of issue 15: one pool of 100; root -> g1 (t1a, t1b), g2 (t2); each team asks 100;
the proposal is 25 / 25 / 50.  Pinning t1a at 40 takes the 15 from t1b, never from g2.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.service.conftest import Clock, Lab

from fairshare import workflow as wf
from fairshare.scenario.files import loads_scenario
from fairshare.service.api.app import create_app
from fairshare.store.db import session_factory
from fairshare.store.repo import create_token, ensure_member, grant, import_scenario

BRANCHES = """
name: branches
pools: [{name: p, gpu: A100, site: x, gpus: 100}]
org:
  name: root
  children:
    - {name: g1, children: [{name: t1a}, {name: t1b}]}
    - {name: g2, children: [{name: t2}]}
policy: {date: 2026-11-01}
"""
PEOPLE = {
    "chair": (wf.Role.committee, "root"),
    "g1-committee": (wf.Role.committee, "g1"),
    "t1a-lead": (wf.Role.lead, "t1a"),
    "t1b-lead": (wf.Role.lead, "t1b"),
    "t2-lead": (wf.Role.lead, "t2"),
}


@pytest.fixture
def lab(engine: Engine) -> Iterator[Lab]:
    tokens = {}
    with session_factory(engine)() as s:
        import_scenario(s, loads_scenario(BRANCHES, "lab.yaml"))
        for name, (role, node) in PEOPLE.items():
            member = ensure_member(s, name)
            grant(s, member, role, node)
            tokens[name] = create_token(s, member)
        s.commit()
    clock = Clock()
    with TestClient(create_app(engine=engine, clock=clock)) as client:
        yield Lab(client, clock, tokens, engine)


def proposed(lab: Lab, publish: bool = False) -> int:
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "r1"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    for team in ("t1a", "t1b", "t2"):
        lab.call(f"{team}-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": team, "team": team, "gpus": 100})
    for step in ("close", "propose", *(["publish"] if publish else [])):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    return rid


def totals(lab: Lab, rid: int) -> dict[str, int]:
    items = lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]
    return {a["request"]: a["total"] for a in items}


def overrides(lab: Lab, rid: int) -> list[dict[str, Any]]:
    got = lab.call("chair", "GET", f"/rounds/{rid}/overrides", 200).json()
    return got["items"] if isinstance(got, dict) else got


def runs(lab: Lab, rid: int) -> int:
    got = lab.call("chair", "GET", f"/rounds/{rid}/runs", 200).json()
    return len(got["items"] if isinstance(got, dict) else got)


def pin(lab: Lab, who: str, rid: int, gpus: int, expect: int, **params: Any) -> Any:
    body = {"request": "t1a", "gpus": gpus, "reason": "launch"}
    return lab.call(who, "POST", f"/rounds/{rid}/overrides", expect, json=body, params=params).json()


def test_the_smallest_case_gives_40_10_50_and_records_where_it_was_absorbed(lab: Lab) -> None:
    rid = proposed(lab)
    assert totals(lab, rid) == {"t1a": 25, "t1b": 25, "t2": 50}
    o = pin(lab, "chair", rid, 40, 201)
    assert (o["scope"], o["authority"]) == ("g1", "root")
    assert totals(lab, rid) == {"t1a": 40, "t1b": 10, "t2": 50}
    # a re-propose replays the override the same way
    lab.call("chair", "POST", f"/rounds/{rid}/propose", 200)
    assert totals(lab, rid) == {"t1a": 40, "t1b": 10, "t2": 50}


def test_a_subtree_committee_may_pin_inside_its_subtree_but_not_take_gpus_from_outside_it(lab: Lab) -> None:
    rid = proposed(lab)
    r = pin(lab, "g1-committee", rid, 90, 409)
    assert "45 GPUs would have to come from outside it" in r["detail"] and "'g1'" in r["detail"]
    assert "committee of 'root'" in r["detail"]
    assert totals(lab, rid) == {"t1a": 25, "t1b": 25, "t2": 50} and overrides(lab, rid) == []
    pin(lab, "g1-committee", rid, 40, 201)
    assert totals(lab, rid) == {"t1a": 40, "t1b": 10, "t2": 50}
    pin(lab, "chair", rid, 90, 201)  # the committee above can
    assert totals(lab, rid)["t1a"] == 90


def test_a_committee_may_not_replace_or_remove_a_pin_made_above_it_and_a_replaced_pin_says_by_whom(lab: Lab) -> None:
    rid = proposed(lab)
    first = pin(lab, "chair", rid, 40, 201)
    r = pin(lab, "g1-committee", rid, 30, 409)
    assert f"override {first['id']}" in r["detail"] and "chair" in r["detail"] and "'root'" in r["detail"]
    r = lab.call("g1-committee", "DELETE", f"/rounds/{rid}/overrides/{first['id']}", 409).json()
    assert f"override {first['id']}" in r["detail"]
    assert totals(lab, rid) == {"t1a": 40, "t1b": 10, "t2": 50}
    second = pin(lab, "chair", rid, 30, 201)
    listed = {o["id"]: o for o in overrides(lab, rid)}
    assert listed[first["id"]]["active"] is False
    assert (listed[first["id"]]["replaced_by"], listed[first["id"]]["ended_by"]) == (second["id"], "chair")
    assert listed[second["id"]]["active"] is True and listed[second["id"]]["replaced_by"] is None
    assert totals(lab, rid) == {"t1a": 30, "t1b": 20, "t2": 50}


def test_removing_an_override_gives_the_round_as_if_it_had_never_been_made(lab: Lab) -> None:
    rid = proposed(lab)
    o = pin(lab, "g1-committee", rid, 40, 201)
    lab.call("g1-committee", "DELETE", f"/rounds/{rid}/overrides/{o['id']}", 200)
    assert totals(lab, rid) == {"t1a": 25, "t1b": 25, "t2": 50}
    assert overrides(lab, rid)[0]["ended_by"] == "g1-committee"


def test_an_override_preview_shows_who_loses_and_saves_nothing(lab: Lab) -> None:
    rid = proposed(lab)
    before_runs = runs(lab, rid)
    p = pin(lab, "g1-committee", rid, 40, 200, dry_run="true")
    assert p["dry_run"] is True and p["refused"] is False and p["absorbed_by"] == "g1"
    got = [(c["kind"], c["name"], c["gpus_before"], c["gpus_after"], c["gpus_delta"]) for c in p["changes"]]
    assert got == [
        ("team", "t1a", 25, 40, 15),
        ("team", "t1b", 25, 10, -15),
        ("request", "t1a", 25, 40, 15),
        ("request", "t1b", 25, 10, -15),
    ]
    assert p["changes"][0]["effective_after"] == pytest.approx(40)
    assert totals(lab, rid) == {"t1a": 25, "t1b": 25, "t2": 50}
    assert overrides(lab, rid) == [] and runs(lab, rid) == before_runs
    # a preview of a refused override says why, and still shows what would move
    p = pin(lab, "g1-committee", rid, 90, 200, dry_run="true")
    assert p["refused"] is True and "45 GPUs would have to come from outside" in p["reason"]
    assert {c["name"]: c["gpus_delta"] for c in p["changes"] if c["kind"] == "team"}["t2"] < 0
    assert overrides(lab, rid) == []


def test_a_removal_preview_and_a_re_propose_preview_save_nothing(lab: Lab) -> None:
    rid = proposed(lab)
    o = pin(lab, "chair", rid, 40, 201)
    n = runs(lab, rid)
    p = lab.call("chair", "DELETE", f"/rounds/{rid}/overrides/{o['id']}", 200, params={"dry_run": "true"}).json()
    assert p["refused"] is False
    assert {c["name"]: c["gpus_delta"] for c in p["changes"] if c["kind"] == "request"} == {"t1a": -15, "t1b": 15}
    p = lab.call("g1-committee", "DELETE", f"/rounds/{rid}/overrides/{o['id']}", 200, params={"dry_run": "true"})
    assert p.json()["refused"] is True and "chair" in p.json()["reason"]
    p = lab.call("chair", "POST", f"/rounds/{rid}/propose", 200, params={"dry_run": "true"}).json()
    assert p["refused"] is False and p["changes"] == []  # the overrides replay to what the committee saw
    assert overrides(lab, rid)[0]["active"] is True and runs(lab, rid) == n
    assert totals(lab, rid) == {"t1a": 40, "t1b": 10, "t2": 50}
    lab.call("chair", "POST", f"/rounds/{rid}/publish", 200)
    p = lab.call("chair", "POST", f"/rounds/{rid}/propose", 200, params={"dry_run": "true"}).json()
    assert p["refused"] is True and "cannot propose a round that is published" in p["reason"]


def test_a_granted_appeal_is_absorbed_by_its_branch_and_a_previewed_ruling_changes_nothing(lab: Lab) -> None:
    rid = proposed(lab, publish=True)
    a = lab.call(
        "t1a-lead", "POST", f"/rounds/{rid}/appeals", 201, json={"request": "t1a", "asked": 40, "reason": "launch"}
    ).json()
    assert a["handler"] == "g1"
    ruling = {"ruling": "grant", "reason": "launch date"}
    p = lab.call("g1-committee", "POST", f"/appeals/{a['id']}/ruling", 200, json=ruling, params={"dry_run": "true"})
    assert p.json()["refused"] is False
    assert {c["name"]: c["gpus_delta"] for c in p.json()["changes"] if c["kind"] == "team"} == {"t1a": 15, "t1b": -15}
    assert lab.call("chair", "GET", f"/appeals/{a['id']}", 200).json()["state"] == "open"
    assert totals(lab, rid) == {"t1a": 25, "t1b": 25, "t2": 50}
    lab.call("g1-committee", "POST", f"/appeals/{a['id']}/ruling", 200, json=ruling)
    assert totals(lab, rid) == {"t1a": 40, "t1b": 10, "t2": 50}


def test_a_grant_that_would_take_gpus_from_outside_the_committees_subtree_is_refused_and_changes_nothing(
    lab: Lab,
) -> None:
    rid = proposed(lab, publish=True)
    a = lab.call(
        "t1a-lead", "POST", f"/rounds/{rid}/appeals", 201, json={"request": "t1a", "asked": 90, "reason": "launch"}
    ).json()
    r = lab.call("g1-committee", "POST", f"/appeals/{a['id']}/ruling", 409, json={"ruling": "grant", "reason": "ok"})
    assert "45 GPUs would have to come from outside it" in r.json()["detail"]
    got = lab.call("chair", "GET", f"/appeals/{a['id']}", 200).json()
    assert (got["state"], got["ruling_amount"]) == ("open", None)
    assert totals(lab, rid) == {"t1a": 25, "t1b": 25, "t2": 50}
    partial = {"ruling": "partial", "amount": 40, "reason": "some"}
    lab.call("g1-committee", "POST", f"/appeals/{a['id']}/ruling", 200, json=partial)
    assert totals(lab, rid) == {"t1a": 40, "t1b": 10, "t2": 50}


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/rounds/{rid}/overrides"), ("DELETE", "/rounds/{rid}/overrides/1"), ("POST", "/rounds/{rid}/propose")],
)
def test_a_dry_run_that_is_not_a_boolean_is_a_422_naming_it(lab: Lab, method: str, path: str) -> None:
    rid = proposed(lab)
    body = {"json": {"request": "t1a", "gpus": 40, "reason": "x"}} if method == "POST" else {}
    r = lab.call("chair", method, path.format(rid=rid), 422, params={"dry_run": "maybe"}, **body)
    assert "dry_run" in r.text
    assert totals(lab, rid) == {"t1a": 25, "t1b": 25, "t2": 50} and overrides(lab, rid) == []


def test_previews_are_for_those_who_may_act(lab: Lab) -> None:
    rid = proposed(lab)
    pin(lab, "t2-lead", rid, 40, 403, dry_run="true")
    lab.call("t2-lead", "POST", f"/rounds/{rid}/propose", 403, params={"dry_run": "true"})
    r = lab.call(
        "chair",
        "POST",
        f"/rounds/{rid}/overrides",
        200,
        params={"dry_run": "true"},
        json={"request": "t1a", "pools": {"nope": 3}, "reason": "x"},
    ).json()
    assert r["refused"] is True and "unknown pool 'nope'" in r["reason"]
