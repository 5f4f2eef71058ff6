"""Copy forward (issue 15, finding 5): a team, or the committee for everyone, copies its requests from the
previous round into the open round in one step; each copy is a new request it can edit or withdraw, and
requests of archived teams are skipped and named."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from tests.service.conftest import Lab


def _request(lab: Lab, rid: int, who: str, key: str, team: str, gpus: int = 100) -> dict[str, Any]:
    body = {"id": key, "team": team, "gpus": gpus, "speed": {"H100": 2.0, "A100": 1.0}, "justification": key}
    return lab.call(who, "POST", f"/rounds/{rid}/requests", 201, json=body).json()


def _round(lab: Lab, name: str) -> int:
    rid: int = lab.call("chair", "POST", "/rounds", 201, json={"name": name}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    return rid


def _march(lab: Lab) -> int:
    """A closed round in which llama, opt and genai asked for GPUs (one llama request withdrawn)."""
    rid = _round(lab, "2026-03")
    _request(lab, rid, "llama-lead", "llama-pretrain", "llama", 120)
    gone = _request(lab, rid, "llama-lead", "llama-old", "llama", 10)
    lab.call("llama-lead", "POST", f"/requests/{gone['id']}/withdraw", 200, json={"version": 1})
    _request(lab, rid, "opt-lead", "opt-eval", "opt", 40)
    _request(lab, rid, "genai-lead", "genai-chat", "genai", 60)
    lab.call("chair", "POST", f"/rounds/{rid}/close", 200)
    return rid


def _keys(lab: Lab, rid: int) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in lab.call("chair", "GET", f"/rounds/{rid}/requests", 200).json()["items"]}


def test_a_team_copies_its_live_requests_as_new_versions_it_can_edit_and_withdraw(lab: Lab) -> None:
    _march(lab)
    april = _round(lab, "2026-04")
    done = lab.call("llama-lead", "POST", f"/rounds/{april}/requests/copy-forward", 201, params={"team": "llama"})
    body = done.json()
    assert body["from_round_name"] == "2026-03" and body["skipped"] == []
    assert [(r["key"], r["gpus"], r["version"], r["round_id"]) for r in body["copied"]] == [
        ("llama-pretrain", 120, 1, april)
    ]
    assert set(_keys(lab, april)) == {"llama-pretrain"}  # only llama's, and not the withdrawn one

    copy = body["copied"][0]
    edited = {**copy, "version": 1, "gpus": 90}
    for k in ("key", "round_id", "withdrawn", "created_at", "updated_at"):
        edited.pop(k)
    edited["id"] = copy["key"]
    lab.call("llama-lead", "PUT", f"/requests/{copy['id']}", 200, json=edited)
    assert _keys(lab, april)["llama-pretrain"]["gpus"] == 90
    lab.call("llama-member", "POST", f"/requests/{copy['id']}/withdraw", 200, json={"version": 2})
    assert _keys(lab, april) == {}


def test_the_committee_copies_everyones_and_an_id_the_round_already_has_is_skipped_and_named(lab: Lab) -> None:
    _march(lab)
    april = _round(lab, "2026-04")
    _request(lab, april, "genai-lead", "genai-chat", "genai", 5)  # filed again by hand already
    answer = lab.call("chair", "POST", f"/rounds/{april}/requests/copy-forward", 201).json()
    assert answer["from_round_name"] == "2026-03"
    assert sorted(r["key"] for r in answer["copied"]) == ["llama-pretrain", "opt-eval"]
    assert [(s["request"], s["team"]) for s in answer["skipped"]] == [("genai-chat", "genai")]
    assert "already has" in answer["skipped"][0]["why"]
    assert _keys(lab, april)["genai-chat"]["gpus"] == 5  # the hand-filed one is untouched
    versions = lab.call("chair", "GET", f"/requests/{answer['copied'][0]['id']}/versions", 200).json()
    assert [v["author"] for v in versions] == ["chair"] and versions[0]["data"]["justification"] == "llama-pretrain"


def test_requests_of_an_archived_team_are_skipped_with_the_reason(lab: Lab) -> None:
    march = _march(lab)
    lab.call("chair", "POST", f"/rounds/{march}/propose", 200)
    lab.call("chair", "POST", f"/rounds/{march}/publish", 200)
    april = _round(lab, "2026-04")
    with lab.engine.begin() as conn:  # opt left after March closed (the API refuses while March is not final)
        conn.execute(text("UPDATE nodes SET archived_at = CURRENT_TIMESTAMP WHERE name = 'opt'"))
    answer = lab.call("chair", "POST", f"/rounds/{april}/requests/copy-forward", 201).json()
    assert sorted(r["key"] for r in answer["copied"]) == ["genai-chat", "llama-pretrain"]
    assert answer["skipped"] == [{"request": "opt-eval", "team": "opt", "why": "team 'opt' is archived"}]
    assert "opt-eval" not in _keys(lab, april)


def test_copy_forward_refusals_name_the_problem_and_change_nothing(lab: Lab) -> None:
    march = _march(lab)
    april = _round(lab, "2026-04")
    # another team's requests: 403, a committee below the round's cannot copy everyone's: 403
    r = lab.call("genai-lead", "POST", f"/rounds/{april}/requests/copy-forward", 403, params={"team": "llama"})
    assert "llama" in r.json()["detail"]
    lab.call("research-committee", "POST", f"/rounds/{april}/requests/copy-forward", 403)
    lab.call("llama-lead", "POST", f"/rounds/{april}/requests/copy-forward", 403)
    # unknown team: 404 naming it; empty team: 422 naming the field; unknown round: 404
    assert (
        "nobody"
        in lab.call("chair", "POST", f"/rounds/{april}/requests/copy-forward", 404, params={"team": "nobody"}).json()[
            "detail"
        ]
    )
    assert "team" in lab.call("chair", "POST", f"/rounds/{april}/requests/copy-forward", 422, params={"team": ""}).text
    lab.call("chair", "POST", "/rounds/999/requests/copy-forward", 404)
    # a round not open (March is closed), and the first round of all (no previous one): 409
    assert "open" in lab.call("chair", "POST", f"/rounds/{march}/requests/copy-forward", 409).json()["detail"]
    lab.call("chair", "POST", f"/rounds/{march}/reopen", 200)
    assert (
        "no previous round" in lab.call("chair", "POST", f"/rounds/{march}/requests/copy-forward", 409).json()["detail"]
    )
    assert _keys(lab, april) == {}
    # a committee above the team may copy that team's
    lab.call("research-committee", "POST", f"/rounds/{april}/requests/copy-forward", 201, params={"team": "research"})
    assert set(_keys(lab, april)) == {"llama-pretrain", "opt-eval"}
