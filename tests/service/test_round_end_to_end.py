"""A whole allocation round through the HTTP API, as a lab would run it."""

from __future__ import annotations

from tests.service.conftest import Lab


def submit(lab: Lab, who: str, rid: int, key: str, team: str, gpus: int, **extra: object) -> dict:
    body = {
        "id": key,
        "team": team,
        "gpus": gpus,
        "speed": {"H100": 2.0, "A100": 1.0},
        "justification": f"{key}: why we need it",
        **extra,
    }
    return lab.call(who, "POST", f"/rounds/{rid}/requests", 201, json=body).json()


def test_full_round_open_submit_propose_override_publish_appeal_escalate_rule_final(lab: Lab) -> None:
    rnd = lab.call(
        "chair",
        "POST",
        "/rounds",
        201,
        json={"name": "2026-11", "appeal_window_hours": 48, "appeal_response_hours": 24},
    ).json()
    rid = rnd["id"]
    assert rnd["state"] == "draft" and rnd["next_steps"] == ["open"]
    assert lab.call("chair", "POST", f"/rounds/{rid}/open", 200).json()["state"] == "open"

    llama = submit(lab, "llama-lead", rid, "llama-4", "llama", 150, min=32, priority="high")
    submit(lab, "opt-lead", rid, "opt-3", "opt", 120)
    submit(lab, "genai-lead", rid, "assistant", "genai", 100)
    # a member edits the team's request: a new version, the old one kept
    edited = lab.call(
        "llama-member",
        "PUT",
        f"/requests/{llama['id']}",
        200,
        json={
            "id": "llama-4",
            "team": "llama",
            "gpus": 160,
            "min": 32,
            "priority": "high",
            "speed": {"H100": 2.0, "A100": 1.0},
            "justification": "bigger run",
            "version": llama["version"],
        },
    ).json()
    assert edited["gpus"] == 160 and edited["version"] == llama["version"] + 1
    versions = lab.call("llama-lead", "GET", f"/requests/{llama['id']}/versions", 200).json()
    assert [v["data"]["gpus"] for v in versions] == [150, 160]

    lab.call("chair", "POST", f"/rounds/{rid}/close", 200)
    lab.call(
        "llama-lead", "POST", f"/rounds/{rid}/requests", 409, json={"id": "late", "team": "llama", "gpus": 8}
    )  # closed: no more requests
    proposed = lab.call("chair", "POST", f"/rounds/{rid}/propose", 200).json()
    assert proposed["state"] == "proposed" and proposed["current_run_id"]

    # proposal: the committee sees it, a team does not yet
    alloc = lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()
    got = {a["request"]: a for a in alloc["items"]}
    assert sum(a["total"] for a in got.values()) == 192  # every GPU given out: demand 380 > 192
    assert all(a["reason"] for a in got.values())
    lab.call("llama-lead", "GET", f"/rounds/{rid}/allocation", 403)

    # the committee pins genai's request at 40 GPUs; the engine re-solves the others around it
    before_opt = got["opt-3"]["total"]
    ov = lab.call(
        "chair",
        "POST",
        f"/rounds/{rid}/overrides",
        201,
        json={"request": "assistant", "gpus": 40, "reason": "product launch slipped"},
    ).json()
    assert sum(ov["gpus"].values()) == 40 and ov["author"] == "chair"
    alloc = {a["request"]: a for a in lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]}
    assert alloc["assistant"]["total"] == 40 and alloc["assistant"]["reason_code"] == "override"
    assert sum(a["total"] for a in alloc.values()) == 192
    assert alloc["opt-3"]["total"] >= before_opt

    lab.call("chair", "POST", f"/rounds/{rid}/publish", 200)
    # published: every member sees the allocation and entitlements
    ent = lab.call("genai-lead", "GET", f"/rounds/{rid}/entitlements/llama", 200).json()
    assert ent["total"] == alloc["llama-4"]["total"] and ent["demand"] == 160
    assert ent["reason"].startswith("llama gets") and ent["siblings"][0]["node"] == "opt"

    # opt's lead appeals; it goes to research's committee (the parent of opt)
    appeal = lab.call(
        "opt-lead",
        "POST",
        f"/rounds/{rid}/appeals",
        201,
        json={"request": "opt-3", "asked": 120, "reason": "paper deadline"},
    ).json()
    assert appeal["handler"] == "research" and appeal["state"] == "open"
    # unanswered past its deadline: it escalates to the root's committee
    lab.clock.advance(hours=25)
    moved = lab.call("chair", "POST", "/appeals/escalate", 200).json()
    assert [(a["id"], a["handler"]) for a in moved] == [(appeal["id"], "lab")]
    lab.call(
        "research-committee", "POST", f"/appeals/{appeal['id']}/ruling", 403, json={"ruling": "reject", "reason": "no"}
    )  # no longer theirs
    have = alloc["opt-3"]["total"]
    ruled = lab.call(
        "chair",
        "POST",
        f"/appeals/{appeal['id']}/ruling",
        200,
        json={"ruling": "partial", "amount": have + 10, "reason": "ten more for the deadline"},
    ).json()
    assert ruled["state"] == "partial" and ruled["ruling_amount"] == have + 10
    after = {a["request"]: a for a in lab.call("opt-lead", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]}
    assert after["opt-3"]["total"] == have + 10
    assert sum(a["total"] for a in after.values()) == 192

    # finalize waits for the appeal window
    lab.call("chair", "POST", f"/rounds/{rid}/finalize", 409)
    lab.clock.advance(hours=24)
    final = lab.call("chair", "POST", f"/rounds/{rid}/finalize", 200).json()
    assert final["state"] == "final" and final["next_steps"] == []

    # everything was recorded
    actions = [e["action"] for e in lab.call("chair", "GET", "/audit?limit=1000", 200).json()["items"]]
    for action in (
        "round.create",
        "round.open",
        "request.submit",
        "request.update",
        "round.close",
        "round.propose",
        "override.set",
        "round.publish",
        "appeal.file",
        "appeal.escalate",
        "appeal.partial",
        "round.finalize",
    ):
        assert action in actions, action
