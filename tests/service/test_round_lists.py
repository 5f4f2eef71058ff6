"""`GET /rounds/{id}/runs` and `/overrides` are lists like every other: {items, total, limit, offset}."""

from __future__ import annotations

from tests.service.conftest import Lab


def _proposed(lab: Lab) -> int:
    rid: int = lab.call("chair", "POST", "/rounds", 201, json={"name": "r"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    for key, team, who in (("l1", "llama", "llama-lead"), ("o1", "opt", "opt-lead")):
        lab.call(who, "POST", f"/rounds/{rid}/requests", 201, json={"id": key, "team": team, "gpus": 100})
    lab.call("chair", "POST", f"/rounds/{rid}/close", 200)
    lab.call("chair", "POST", f"/rounds/{rid}/propose", 200)
    lab.call("chair", "POST", f"/rounds/{rid}/propose", 200)
    return rid


def test_runs_and_overrides_are_pages_newest_run_first(lab: Lab) -> None:
    rid = _proposed(lab)
    runs = lab.call("chair", "GET", f"/rounds/{rid}/runs", 200).json()
    assert (runs["total"], runs["limit"], runs["offset"], len(runs["items"])) == (2, 100, 0, 2)
    assert runs["items"][0]["id"] > runs["items"][1]["id"]
    second = lab.call("chair", "GET", f"/rounds/{rid}/runs", 200, params={"limit": 1, "offset": 1}).json()
    assert second["total"] == 2 and [r["id"] for r in second["items"]] == [runs["items"][1]["id"]]
    lab.call("chair", "POST", f"/rounds/{rid}/overrides", 201, json={"request": "l1", "gpus": 40, "reason": "x"})
    overrides = lab.call("chair", "GET", f"/rounds/{rid}/overrides", 200).json()
    assert overrides["total"] == 1 and overrides["items"][0]["request"] == "l1"


def test_bad_paging_is_a_422_naming_the_field(lab: Lab) -> None:
    rid = _proposed(lab)
    for path in (f"/rounds/{rid}/runs", f"/rounds/{rid}/overrides"):
        assert "limit" in lab.call("chair", "GET", path, 422, params={"limit": 0}).text
        assert "offset" in lab.call("chair", "GET", path, 422, params={"offset": -1}).text
    lab.call("chair", "GET", "/rounds/999/runs", 404)
