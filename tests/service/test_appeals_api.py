"""Appeals through the API: rulings, appeals again, escalation to the root and no further."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.service.conftest import Clock, Lab, seed

from fairshare.service.api.app import create_app


@pytest.fixture
def published(lab: Lab) -> int:
    """A published round where llama, opt and genai each asked for more than they got."""
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "r1", "appeal_response_hours": 10}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    for who, key, team in (("llama-lead", "l1", "llama"), ("opt-lead", "o1", "opt"), ("genai-lead", "g1", "genai")):
        lab.call(who, "POST", f"/rounds/{rid}/requests", 201, json={"id": key, "team": team, "gpus": 150})
    for step in ("close", "propose", "publish"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    return rid


def totals(lab: Lab, rid: int) -> dict[str, int]:
    items = lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]
    return {a["request"]: a["total"] for a in items}


def test_reject_then_appeal_again_goes_one_committee_up(lab: Lab, published: int) -> None:
    a = lab.call(
        "llama-lead",
        "POST",
        f"/rounds/{published}/appeals",
        201,
        json={"request": "l1", "asked": 150, "reason": "more"},
    ).json()
    assert a["handler"] == "research"
    before = totals(lab, published)
    r = lab.call(
        "research-committee",
        "POST",
        f"/appeals/{a['id']}/ruling",
        200,
        json={"ruling": "reject", "reason": "fair as is"},
    ).json()
    assert r["state"] == "rejected" and r["ruled_by"] == "research-committee"
    assert totals(lab, published) == before  # a rejection changes nothing
    lab.call(
        "research-committee",
        "POST",
        f"/appeals/{a['id']}/ruling",
        409,
        json={"ruling": "grant", "reason": "changed my mind"},
    )  # already ruled
    again = lab.call("llama-lead", "POST", f"/appeals/{a['id']}/reappeal", 200, json={"reason": "please"}).json()
    assert again["state"] == "open" and again["handler"] == "lab" and again["escalations"] == 1
    # at the root: a rejection is the last word
    lab.call("chair", "POST", f"/appeals/{a['id']}/ruling", 200, json={"ruling": "reject", "reason": "no"})
    lab.call("llama-lead", "POST", f"/appeals/{a['id']}/reappeal", 409, json={"reason": "really"})


def test_an_appeal_must_ask_for_more_and_a_request_has_one_open_appeal_at_a_time(lab: Lab, published: int) -> None:
    """An appeal for what the request already has could only be rejected (a grant cannot give
    less); a second open appeal on the same request would race the first one's ruling."""
    have = totals(lab, published)["l1"]
    r = lab.call(
        "llama-lead",
        "POST",
        f"/rounds/{published}/appeals",
        422,
        json={"request": "l1", "asked": have, "reason": "same"},
    )
    assert f"more than the {have} GPUs request 'l1' has" in r.json()["detail"]
    a = lab.call(
        "llama-lead",
        "POST",
        f"/rounds/{published}/appeals",
        201,
        json={"request": "l1", "asked": have + 5, "reason": "more"},
    ).json()
    r = lab.call(
        "llama-lead",
        "POST",
        f"/rounds/{published}/appeals",
        409,
        json={"request": "l1", "asked": have + 9, "reason": "even more"},
    )
    assert f"already has an open appeal ({a['id']})" in r.json()["detail"]
    assert [x["id"] for x in lab.call("chair", "GET", "/appeals", 200).json()["items"]] == [a["id"]]


def test_grant_gives_the_amount_asked_and_takes_it_from_the_others(lab: Lab, published: int) -> None:
    before = totals(lab, published)
    asked = before["g1"] + 20
    a = lab.call(
        "genai-lead",
        "POST",
        f"/rounds/{published}/appeals",
        201,
        json={"request": "g1", "asked": asked, "reason": "launch"},
    ).json()
    assert a["handler"] == "product"  # genai's parent; nobody sits on product's committee ...
    lab.clock.advance(hours=11)
    lab.call("chair", "POST", "/appeals/escalate", 200)  # ... so it goes up when overdue
    lab.call("chair", "POST", f"/appeals/{a['id']}/ruling", 200, json={"ruling": "grant", "reason": "ok"})
    after = totals(lab, published)
    assert after["g1"] == asked
    assert sum(after.values()) == sum(before.values()) == 192
    overrides = lab.call("chair", "GET", f"/rounds/{published}/overrides", 200).json()["items"]
    assert [o["source"] for o in overrides] == [f"appeal:{a['id']}"]


def test_only_the_teams_lead_may_appeal_and_only_a_published_round(lab: Lab, published: int) -> None:
    lab.call(
        "llama-member", "POST", f"/rounds/{published}/appeals", 403, json={"request": "l1", "asked": 150, "reason": "x"}
    )
    lab.call(
        "opt-lead", "POST", f"/rounds/{published}/appeals", 403, json={"request": "l1", "asked": 150, "reason": "x"}
    )  # not opt's request
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "r2"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    lab.call("llama-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": "l1", "team": "llama", "gpus": 5})
    lab.call("llama-lead", "POST", f"/rounds/{rid}/appeals", 409, json={"request": "l1", "asked": 9, "reason": "x"})


def test_escalation_stops_at_the_root(lab: Lab, published: int) -> None:
    a = lab.call(
        "opt-lead", "POST", f"/rounds/{published}/appeals", 201, json={"request": "o1", "asked": 150, "reason": "x"}
    ).json()
    handlers = []
    for _ in range(3):
        lab.clock.advance(hours=11)
        lab.call("chair", "POST", "/appeals/escalate", 200)
        handlers.append(lab.call("opt-lead", "GET", f"/appeals/{a['id']}", 200).json()["handler"])
    assert handlers == ["lab", "lab", "lab"]
    shown = lab.call("opt-lead", "GET", f"/appeals/{a['id']}", 200).json()
    assert shown["overdue"] is True and shown["escalations"] == 1


def test_appeals_queue_filters_by_the_committee_subtree(lab: Lab, published: int) -> None:
    lab.call(
        "llama-lead", "POST", f"/rounds/{published}/appeals", 201, json={"request": "l1", "asked": 150, "reason": "x"}
    )
    lab.call(
        "genai-lead", "POST", f"/rounds/{published}/appeals", 201, json={"request": "g1", "asked": 150, "reason": "y"}
    )
    queue = lab.call("research-committee", "GET", "/appeals?handler=research", 200).json()
    assert [a["team"] for a in queue["items"]] == ["llama"]
    everything = lab.call("chair", "GET", "/appeals", 200).json()
    assert everything["total"] == 2
    # a team sees its own appeal's reason, not another team's
    mine = {a["team"]: a for a in lab.call("llama-lead", "GET", "/appeals", 200).json()["items"]}
    assert set(mine) == {"llama"} and mine["llama"]["reason"] == "x"


def test_a_withdrawn_request_cannot_be_appealed_from_the_api_or_the_team_page(engine: Engine) -> None:
    """A request withdrawn while the round was open has no decision to appeal, whichever way the lead asks."""
    tokens = seed(engine)
    lab = Lab(TestClient(create_app(engine=engine, clock=Clock(), secure_cookies=False)), Clock(), tokens, engine)
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "w"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    lab.call("llama-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": "l1", "team": "llama", "gpus": 150})
    gone = lab.call(
        "llama-lead", "POST", f"/rounds/{rid}/requests", 201, json={"id": "l2", "team": "llama", "gpus": 150}
    ).json()
    lab.call("llama-lead", "POST", f"/requests/{gone['id']}/withdraw", 200, json={"version": gone["version"]})
    for step in ("close", "propose", "publish"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)

    lab.call("llama-lead", "POST", f"/rounds/{rid}/appeals", 404, json={"request": "l2", "asked": 200, "reason": "x"})
    web = lab.client
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', web.get("/login").text)[1]  # type: ignore[index]
    web.post("/login", data={"token": tokens["llama-lead"], "csrf": login_csrf}, follow_redirects=False)
    csrf = re.search(r'name="csrf" value="([^"]+)"', web.get(f"/rounds/{rid}/teams/llama").text)[1]  # type: ignore[index]
    page = web.post(
        f"/rounds/{rid}/teams/llama/appeals",
        data={"request": "l2", "asked": "200", "reason": "we still need it", "csrf": csrf},
    )
    assert "choose one of the team&#39;s requests" in page.text or "choose one of the team's requests" in page.text
    assert lab.call("chair", "GET", f"/appeals?round_id={rid}", 200).json()["items"] == []
