"""GET entitlements is served from kept answers: prove it never serves a stale or hidden one.

Every case runs on SQLite and PostgreSQL (the `lab` fixture).  Each reads an entitlement first,
so that the answer is kept, then changes the round and reads again.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.service.conftest import Lab

from fairshare.service.api.app import create_app
from fairshare.service.api.entitlement_cache import EntitlementCache, Stamp

TEAMS = {"llama": 150, "opt": 120, "genai": 100}


def proposed_round(lab: Lab, name: str = "r") -> int:
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": name}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    for team, gpus in TEAMS.items():
        lab.call(
            "admin",
            "POST",
            f"/rounds/{rid}/requests",
            201,
            json={
                "id": f"{team}-req",
                "team": team,
                "gpus": gpus,
                "speed": {"H100": 2.0, "A100": 1.0},
                "justification": f"{team}'s reasons",
            },
        )
    lab.call("chair", "POST", f"/rounds/{rid}/close", 200)
    lab.call("chair", "POST", f"/rounds/{rid}/propose", 200)
    return rid


def entitlement(lab: Lab, who: str, rid: int, node: str, expect: int = 200) -> Any:
    return lab.call(who, "GET", f"/rounds/{rid}/entitlements/{node}", expect).json()


def test_an_override_shows_at_once(lab: Lab) -> None:
    rid = proposed_round(lab)
    before = entitlement(lab, "chair", rid, "genai")
    assert before["total"] > 40 and entitlement(lab, "chair", rid, "genai") == before  # kept
    lab.call(
        "chair",
        "POST",
        f"/rounds/{rid}/overrides",
        201,
        json={"request": "genai-req", "gpus": 40, "reason": "launch slipped"},
    )
    after = entitlement(lab, "chair", rid, "genai")
    assert after["total"] == 40 and after["reasons"] == {"override": 1}
    assert after["run_id"] != before["run_id"]
    # the other nodes were re-solved around the pin: their kept answers are not served either
    assert entitlement(lab, "chair", rid, "research")["total"] == 192 - 40


def test_removing_an_override_and_re_proposing_show_at_once(lab: Lab) -> None:
    rid = proposed_round(lab)
    free = entitlement(lab, "chair", rid, "genai")
    ov = lab.call(
        "chair", "POST", f"/rounds/{rid}/overrides", 201, json={"request": "genai-req", "gpus": 40, "reason": "pin"}
    ).json()
    assert entitlement(lab, "chair", rid, "genai")["total"] == 40
    lab.call("chair", "DELETE", f"/rounds/{rid}/overrides/{ov['id']}", 200)
    unpinned = entitlement(lab, "chair", rid, "genai")
    assert unpinned["total"] == free["total"] and unpinned["run_id"] > free["run_id"]
    rerun = lab.call("chair", "POST", f"/rounds/{rid}/propose", 200).json()
    assert entitlement(lab, "chair", rid, "genai")["run_id"] == rerun["current_run_id"]


def test_publish_shows_at_once_and_opens_the_answer_to_everyone(lab: Lab) -> None:
    rid = proposed_round(lab)
    assert entitlement(lab, "chair", rid, "llama")["round_state"] == "proposed"
    # kept for the committee, still hidden from the team
    entitlement(lab, "llama-member", rid, "llama", 403)
    lab.call("chair", "POST", f"/rounds/{rid}/publish", 200)
    for who in ("chair", "llama-member", "genai-lead"):
        assert entitlement(lab, who, rid, "llama")["round_state"] == "published"


def test_reopening_hides_a_kept_answer_again(lab: Lab) -> None:
    rid = proposed_round(lab)
    entitlement(lab, "chair", rid, "llama")
    lab.call("chair", "POST", f"/rounds/{rid}/reopen", 200)
    r = lab.call("chair", "GET", f"/rounds/{rid}/entitlements/llama", 403)
    assert "visible to the committee only" in r.json()["detail"]


def test_a_granted_appeal_shows_at_once(lab: Lab) -> None:
    rid = proposed_round(lab)
    lab.call("chair", "POST", f"/rounds/{rid}/publish", 200)
    before = entitlement(lab, "llama-lead", rid, "llama")
    assert before["total"] < 150
    appeal = lab.call(
        "llama-lead",
        "POST",
        f"/rounds/{rid}/appeals",
        201,
        json={"request": "llama-req", "asked": 150, "reason": "the deadline"},
    ).json()
    assert entitlement(lab, "llama-lead", rid, "llama") == before  # an open appeal changes nothing
    lab.call(  # the root's committee: the grant takes GPUs from outside research, which research's committee may not
        "chair", "POST", f"/appeals/{appeal['id']}/ruling", 200, json={"ruling": "grant", "reason": "fair"}
    )
    after = entitlement(lab, "llama-lead", rid, "llama")
    assert after["total"] == 150 and after["run_id"] != before["run_id"]


def test_a_change_by_another_worker_shows_at_once(lab: Lab) -> None:
    """Two apps on one database stand for two uvicorn workers: each keeps its own answers."""
    rid = proposed_round(lab)
    before = entitlement(lab, "chair", rid, "genai")
    with TestClient(create_app(engine=lab.engine, clock=lab.clock)) as other:
        r = other.post(
            f"/api/v1/rounds/{rid}/overrides",
            headers=lab.as_("chair"),
            json={"request": "genai-req", "gpus": 40, "reason": "pin"},
        )
        assert r.status_code == 201, r.text
        r = other.post(f"/api/v1/rounds/{rid}/publish", headers=lab.as_("chair"))
        assert r.status_code == 200, r.text
    after = entitlement(lab, "llama-member", rid, "genai")
    assert after["total"] == 40 and after["round_state"] == "published" and after["run_id"] != before["run_id"]


def test_statuses_are_unchanged_by_kept_answers(lab: Lab) -> None:
    rid = proposed_round(lab)
    entitlement(lab, "chair", rid, "llama")
    path = f"/api/v1/rounds/{rid}/entitlements/llama"
    assert lab.client.get(path).status_code == 401
    assert lab.client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert lab.client.get(path, headers={"Authorization": "Basic abc"}).status_code == 401
    for who in ("llama-lead", "llama-member", "opt-lead", "genai-lead"):
        entitlement(lab, who, rid, "llama", 403)
    assert "no org node named 'nobody'" in entitlement(lab, "chair", rid, "nobody", 404)["detail"]
    assert entitlement(lab, "chair", 999_999, "llama", 404)["detail"] == "no round with id 999999"
    assert lab.call("chair", "GET", "/rounds/0/entitlements/llama", 422).status_code == 422
    draft = lab.call("chair", "POST", "/rounds", 201, json={"name": "draft"}).json()["id"]
    assert "no proposal yet" in entitlement(lab, "chair", draft, "llama", 404)["detail"]


def test_a_read_that_started_before_a_request_arrived_is_not_shared_with_it(engine: Engine) -> None:
    """Requests share a read of the round only if it started after they arrived: one that was in
    flight when the request came may have missed a commit its caller had already seen."""
    value = ["old"]
    entered, release = threading.Event(), threading.Event()
    reads: list[str] = []

    class Scripted(EntitlementCache):
        def _read_stamp(self, round_id: int) -> Stamp:
            seen = value[0]  # the snapshot is taken when the read starts
            reads.append(seen)
            if len(reads) == 1:
                entered.set()
                release.wait(10)
            return (seen, 1)

    cache = Scripted(engine)

    async def scenario() -> list[Stamp]:
        first = asyncio.ensure_future(cache.stamp(7))
        while not entered.is_set():
            await asyncio.sleep(0.001)
        value[0] = "new"  # a commit, seen by the callers of the next requests
        later = [asyncio.ensure_future(cache.stamp(7)) for _ in range(5)]
        await asyncio.sleep(0.01)
        release.set()
        return [await first] + [await t for t in later]

    got = asyncio.run(scenario())
    assert got[0] == ("old", 1)
    assert got[1:] == [("new", 1)] * 5
    assert reads == ["old", "new"]  # the five later requests shared one read


def test_a_kept_answer_is_served_before_routing_exactly_as_the_endpoint_serves_it(lab: Lab, monkeypatch: Any) -> None:
    rid = proposed_round(lab)
    path = f"/api/v1/rounds/{rid}/entitlements/llama"
    first = lab.client.get(path, headers=lab.as_("chair"))

    def no_endpoint(*_: Any) -> None:
        raise AssertionError("the endpoint ran for a kept answer")

    monkeypatch.setattr(EntitlementCache, "answer", no_endpoint)
    second = lab.client.get(path, headers=lab.as_("chair"))  # a kept caller, round stamp read again
    assert second.status_code == first.status_code == 200
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"] == "application/json"
    assert second.headers["content-length"] == first.headers["content-length"]
    metrics = lab.client.get("/metrics").text
    label = 'method="GET",route="/api/v1/rounds/{round_id}/entitlements/{node}",status="200"'
    assert f"fairshare_http_requests_total{{{label}}} 2.0" in metrics
    # still checked before it is served: the team does not see a proposal (also once its caller is
    # kept, the second time), a stranger is refused
    for _ in range(2):
        assert lab.client.get(path, headers=lab.as_("llama-member")).status_code == 403
    assert lab.client.get(path, headers={"Authorization": "Bearer " + lab.tokens["chair"] + "x"}).status_code == 401
