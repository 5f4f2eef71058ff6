"""POSTs with an Idempotency-Key: a retry gets the first answer and creates nothing new."""

from __future__ import annotations

from typing import Any

from tests.service.conftest import Lab


def open_round(lab: Lab) -> int:
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "2026-12"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    return rid


def request_body(key: str, gpus: int = 64) -> dict[str, Any]:
    return {
        "id": key,
        "team": "llama",
        "gpus": gpus,
        "speed": {"H100": 2.0, "A100": 1.0},
        "justification": "pre-training",
    }


def submit(lab: Lab, rid: int, body: dict[str, Any], key: str) -> Any:
    return lab.call("llama-lead", "POST", f"/rounds/{rid}/requests", json=body, headers={"Idempotency-Key": key})


def request_keys(lab: Lab, rid: int) -> list[str]:
    return [r["key"] for r in lab.call("llama-lead", "GET", f"/rounds/{rid}/requests", 200).json()["items"]]


def submit_audits(lab: Lab) -> int:
    items = lab.call("chair", "GET", "/audit?limit=1000", 200).json()["items"]
    return sum(1 for e in items if e["action"] == "request.submit")


def test_repeated_post_with_the_same_key_returns_the_first_response_and_creates_one_object(lab: Lab) -> None:
    rid = open_round(lab)
    first = submit(lab, rid, request_body("llama-5"), "key-1")
    again = submit(lab, rid, request_body("llama-5"), "key-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert request_keys(lab, rid) == ["llama-5"]
    assert submit_audits(lab) == 1  # the replay ran nothing
    versions = lab.call("llama-lead", "GET", f"/requests/{first.json()['id']}/versions", 200).json()
    assert [v["version"] for v in versions] == [1]


def test_the_same_key_with_a_different_body_is_refused_with_422_and_changes_nothing(lab: Lab) -> None:
    rid = open_round(lab)
    first = submit(lab, rid, request_body("llama-5", gpus=64), "key-1")
    assert first.status_code == 201
    other = submit(lab, rid, request_body("llama-5", gpus=128), "key-1")
    assert other.status_code == 422, other.text
    assert "Idempotency-Key" in other.json()["detail"]
    other_path = lab.call(
        "llama-lead",
        "POST",
        f"/rounds/{rid}/requests",
        json=request_body("llama-6"),
        headers={"Idempotency-Key": "key-1"},
    )
    assert other_path.status_code == 422, other_path.text
    assert request_keys(lab, rid) == ["llama-5"]
    stored = lab.call("llama-lead", "GET", f"/requests/{first.json()['id']}", 200).json()
    assert stored["gpus"] == 64 and stored["version"] == 1


def test_different_keys_are_different_requests(lab: Lab) -> None:
    rid = open_round(lab)
    a = submit(lab, rid, request_body("llama-5"), "key-a")
    b = submit(lab, rid, request_body("llama-6"), "key-b")
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert sorted(request_keys(lab, rid)) == ["llama-5", "llama-6"]
    # the same body under a new key is a new attempt, not a replay: here a duplicate id
    dup = submit(lab, rid, request_body("llama-5"), "key-c")
    assert dup.status_code == 409 and "idempotent-replayed" not in dup.headers
    assert submit_audits(lab) == 2


def test_different_keys_with_the_same_body_create_two_objects(lab: Lab) -> None:
    body = {"label": "ci"}
    a = lab.call("admin", "POST", "/members/llama-member/tokens", 201, json=body, headers={"Idempotency-Key": "t-1"})
    b = lab.call("admin", "POST", "/members/llama-member/tokens", 201, json=body, headers={"Idempotency-Key": "t-2"})
    assert a.json()["token"] != b.json()["token"]
    for token in (a.json()["token"], b.json()["token"]):
        me = lab.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["name"] == "llama-member"


def test_a_key_belongs_to_its_caller(lab: Lab) -> None:
    """Another caller's identical key is not a replay of someone else's request."""
    rid = open_round(lab)
    mine = submit(lab, rid, request_body("llama-5"), "shared-key")
    theirs = lab.call(
        "llama-member",
        "POST",
        f"/rounds/{rid}/requests",
        json=request_body("llama-5"),
        headers={"Idempotency-Key": "shared-key"},
    )
    assert mine.status_code == 201
    assert theirs.status_code == 409 and "idempotent-replayed" not in theirs.headers  # ran: a duplicate id


def test_a_retry_after_a_conflict_runs_again(lab: Lab) -> None:
    """A 409 is not stored: once the conflict is gone, the same key goes through."""
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "2026-12"}).json()["id"]
    early = submit(lab, rid, request_body("llama-5"), "key-1")
    assert early.status_code == 409, early.text  # the round is still a draft
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    later = submit(lab, rid, request_body("llama-5"), "key-1")
    assert later.status_code == 201 and "idempotent-replayed" not in later.headers
    assert request_keys(lab, rid) == ["llama-5"]


def test_a_new_token_is_never_stored_for_replay(lab: Lab) -> None:
    from sqlalchemy import select

    from fairshare.store import models as m
    from fairshare.store.db import session_factory

    r = lab.call(
        "admin", "POST", "/members/chair/tokens", 201, json={"label": "x"}, headers={"Idempotency-Key": "token-1"}
    )
    token = r.json()["token"]
    with session_factory(lab.engine)() as s:
        stored = [row.body for row in s.scalars(select(m.IdempotentResponse))]
    assert all(token not in str(body) for body in stored)


def test_a_refusal_that_echoes_a_nul_is_stored_and_replayed(lab: Lab) -> None:
    """A 422 echoes the bad input; PostgreSQL's JSONB cannot hold its NUL, and storing the
    answer must not turn the refusal into a 500 that blocks the key."""
    body = {"role": "lead", "node": "a\x00b"}
    first = lab.call("admin", "POST", "/members/llama-lead/grants", json=body, headers={"Idempotency-Key": "nul-1"})
    again = lab.call("admin", "POST", "/members/llama-lead/grants", json=body, headers={"Idempotency-Key": "nul-1"})
    assert first.status_code == again.status_code == 422, first.text
    assert again.headers.get("idempotent-replayed") == "true"


def test_a_request_that_fails_with_an_unhandled_error_frees_its_key(lab: Lab, monkeypatch: Any) -> None:
    """A 500 is a fault the caller may retry; the key must not stay "still running" for good.
    (A bug cannot be caused for real in a test, so the failure is injected, once.)"""
    import pytest

    from fairshare.service.ops import requests as ops

    rid = open_round(lab)
    real = ops.submit_request
    calls = []

    def fails_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected fault")
        return real(*args, **kwargs)

    monkeypatch.setattr(ops, "submit_request", fails_once)
    with pytest.raises(RuntimeError, match="injected fault"):
        submit(lab, rid, request_body("llama-5"), "key-1")
    retry = submit(lab, rid, request_body("llama-5"), "key-1")
    assert retry.status_code == 201, retry.text
    assert request_keys(lab, rid) == ["llama-5"]


def test_a_key_whose_first_request_never_answered_is_freed_after_ten_minutes(lab: Lab) -> None:
    """A server that stops mid-request leaves its claim behind; after ABANDONED_CLAIM it is void."""
    import hashlib
    import json

    from fairshare.service.api.app import ABANDONED_CLAIM
    from fairshare.store import models as m
    from fairshare.store.db import session_factory
    from fairshare.store.repo import token_digest

    rid = open_round(lab)
    owner = token_digest(f"Bearer {lab.tokens['llama-lead']}")
    path, body = f"/rounds/{rid}/requests", json.dumps(request_body("llama-5")).encode()
    fingerprint = hashlib.sha256(b"|".join([b"POST", f"/api/v1{path}".encode(), b"", body])).hexdigest()
    for age, expected in ((ABANDONED_CLAIM / 2, 409), (ABANDONED_CLAIM * 1.1, 201)):
        with session_factory(lab.engine)() as s:
            s.query(m.IdempotentResponse).delete()
            s.add(
                m.IdempotentResponse(
                    owner=owner, key="key-1", fingerprint=fingerprint, status=0, body=None, at=m.utcnow() - age
                )
            )
            s.commit()
        r = lab.call(
            "llama-lead",
            "POST",
            path,
            content=body,
            headers={"Idempotency-Key": "key-1", "Content-Type": "application/json"},
        )
        assert r.status_code == expected, r.text
    assert request_keys(lab, rid) == ["llama-5"]
