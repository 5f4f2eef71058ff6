"""Operations: health, Prometheus metrics, and bad input that changes nothing."""

from __future__ import annotations

from tests.service.conftest import Lab


def test_healthz_answers_without_a_token(lab: Lab) -> None:
    r = lab.client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_metrics_count_requests_per_route_and_time_round_solves(lab: Lab) -> None:
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "m"}).json()["id"]
    for step in ("open", "close", "propose"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    lab.call("chair", "GET", f"/rounds/{rid}", 200)
    text = lab.client.get("/metrics").text
    assert 'fairshare_http_requests_total{method="GET",route="/api/v1/rounds/{round_id}",status="200"} 1.0' in text
    assert "fairshare_http_request_duration_seconds_bucket" in text
    assert "fairshare_round_solve_seconds_count 1.0" in text


def test_invalid_request_is_422_with_the_field_path_and_stores_nothing(lab: Lab) -> None:
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "v"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    r = lab.call("llama-lead", "POST", f"/rounds/{rid}/requests", 422, json={"id": "a", "team": "llama", "gpus": 0})
    assert any(e["loc"][-1] == "gpus" for e in r.json()["detail"])
    r = lab.call(
        "llama-lead",
        "POST",
        f"/rounds/{rid}/requests",
        422,
        json={"id": "a", "team": "llama", "gpus": 4, "speed": {"TPU": 1.0}},
    )
    assert "unknown GPU type 'TPU'" in r.text
    assert lab.call("chair", "GET", f"/rounds/{rid}/requests", 200).json()["total"] == 0
    assert [e["action"] for e in lab.call("chair", "GET", "/audit?entity=request", 200).json()["items"]] == []


def test_stale_version_is_409_and_keeps_the_stored_request(lab: Lab) -> None:
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "s"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    req = lab.call(
        "llama-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": "a", "team": "llama", "gpus": 4}
    ).json()
    body = {"id": "a", "team": "llama", "gpus": 5, "version": req["version"]}
    lab.call("llama-lead", "PUT", f"/requests/{req['id']}", 200, json=body)
    r = lab.call("llama-member", "PUT", f"/requests/{req['id']}", 409, json={**body, "gpus": 6})
    assert "re-read" in r.json()["detail"]
    assert lab.call("llama-lead", "GET", f"/requests/{req['id']}", 200).json()["gpus"] == 5


def test_a_second_round_with_the_same_name_is_refused_by_name(lab: Lab) -> None:
    first = lab.call("chair", "POST", "/rounds", 201, json={"name": "2026-12"}).json()
    r = lab.call("chair", "POST", "/rounds", 409, json={"name": "2026-12"})
    assert r.json()["detail"] == f"round '2026-12' exists (id {first['id']}); choose another name"


def test_moving_a_request_to_another_team_answers_with_the_new_team(lab: Lab) -> None:
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "m"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    req = lab.call("admin", "POST", f"/rounds/{rid}/requests", 201, json={"id": "a", "team": "opt", "gpus": 4}).json()
    moved = lab.call(
        "admin",
        "PUT",
        f"/requests/{req['id']}",
        200,
        json={"id": "a", "team": "llama", "gpus": 4, "version": req["version"]},
    ).json()
    assert moved["team"] == "llama"
    assert lab.call("admin", "GET", f"/requests/{req['id']}", 200).json()["team"] == "llama"


def test_withdrawn_requests_leave_the_round(lab: Lab) -> None:
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "w"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    a = lab.call(
        "llama-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": "a", "team": "llama", "gpus": 4}
    ).json()
    lab.call("llama-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": "b", "team": "llama", "gpus": 4})
    lab.call("llama-lead", "POST", f"/requests/{a['id']}/withdraw", 200, json={"version": a["version"]})
    for step in ("close", "propose"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    got = [x["request"] for x in lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]]
    assert got == ["b"]
    assert lab.call("chair", "GET", f"/rounds/{rid}/requests?withdrawn=true", 200).json()["total"] == 2


def test_audit_export_as_csv_and_jsonl(lab: Lab) -> None:
    lab.call("chair", "POST", "/rounds", 201, json={"name": "a"})
    lines = lab.call("chair", "GET", "/audit/export", 200).text.splitlines()
    assert any('"round.create"' in line for line in lines)
    csv_text = lab.call("admin", "GET", "/audit/export?format=csv", 200).text
    assert csv_text.splitlines()[0].startswith("id,at,actor,action")
    lab.call("llama-lead", "GET", "/audit/export", 403)
