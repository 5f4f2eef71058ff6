"""A round keeps its world: the pools and org it closed with are the ones every later solve uses
(issue 15, finding 1), whatever the lab becomes; draft and open rounds follow the lab."""

from __future__ import annotations

import copy

import pytest
import yaml
from sqlalchemy import Engine, create_engine, text
from tests.service.conftest import SMALL_LAB, Lab

from fairshare.store.db import upgrade

GROWN_LAB = yaml.safe_load(SMALL_LAB)
GROWN_LAB["pools"].append({"name": "h100-north", "gpu": "H100", "site": "north", "gpus": 256})
GROWN_LAB["org"]["children"][1]["children"].append({"name": "media", "weight": 3})
GROWN_LAB["policy"]["date"] = str(GROWN_LAB["policy"]["date"])  # JSON, as the API takes it


def _submit(lab: Lab, rid: int) -> None:
    for who, key, team, gpus in (
        ("llama-lead", "llama-4", "llama", 150),
        ("opt-lead", "opt-3", "opt", 120),
        ("genai-lead", "assistant", "genai", 100),
    ):
        lab.call(
            who,
            "POST",
            f"/rounds/{rid}/requests",
            201,
            json={"id": key, "team": team, "gpus": gpus, "speed": {"H100": 2.0, "A100": 1.0}},
        )


def _round(lab: Lab, name: str) -> int:
    rid: int = lab.call("chair", "POST", "/rounds", 201, json={"name": name}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    _submit(lab, rid)
    return rid


def _totals(lab: Lab, rid: int) -> dict[str, int]:
    items = lab.call("chair", "GET", f"/rounds/{rid}/allocation", 200).json()["items"]
    return {a["request"]: a["total"] for a in items}


def test_a_closed_round_is_solved_on_the_world_it_closed_with(lab: Lab) -> None:
    may = _round(lab, "2026-05")
    lab.call("chair", "POST", f"/rounds/{may}/close", 200)
    lab.call("chair", "POST", f"/rounds/{may}/propose", 200)
    before = _totals(lab, may)
    assert sum(before.values()) == 192  # both pools, all given out

    lab.call("admin", "POST", "/import", 201, json=GROWN_LAB)  # a new pool and a new team arrive

    # re-proposing May (as a late ruling or override would) keeps May's 192 GPUs and May's teams
    lab.call("chair", "POST", f"/rounds/{may}/propose", 200)
    assert _totals(lab, may) == before
    world = lab.call("chair", "GET", "/export", 200, params={"round_id": may}).json()
    assert [p["name"] for p in world["pools"]] == ["h100-east", "a100-west"]
    assert "media" not in str(world["org"])

    # the lab itself, and a new round, have the new pool and team
    june = _round(lab, "2026-06")
    assert [p["name"] for p in lab.call("chair", "GET", "/export", 200, params={"round_id": june}).json()["pools"]] == [
        "h100-east",
        "a100-west",
        "h100-north",
    ]
    lab.call("chair", "POST", f"/rounds/{june}/close", 200)
    lab.call("chair", "POST", f"/rounds/{june}/propose", 200)
    assert sum(_totals(lab, june).values()) == 370  # every request met on 448 GPUs


def test_an_open_round_follows_the_lab_until_it_closes_and_again_once_reopened(lab: Lab) -> None:
    rid = _round(lab, "2026-05")
    lab.call("admin", "POST", "/import", 201, json=GROWN_LAB)
    lab.call("chair", "POST", f"/rounds/{rid}/close", 200)
    lab.call("chair", "POST", f"/rounds/{rid}/propose", 200)
    assert sum(_totals(lab, rid).values()) == 370  # the pool arrived while it was open: all demand met

    shrunk = copy.deepcopy(GROWN_LAB)
    shrunk["pools"][2]["gpus"] = 64
    lab.call("admin", "POST", "/import", 201, json=shrunk)
    lab.call("chair", "POST", f"/rounds/{rid}/propose", 200)
    assert sum(_totals(lab, rid).values()) == 370  # closed: the lab's 256 GPUs do not reach it


def test_a_pool_that_changes_type_changes_open_rounds_not_closed_ones(lab: Lab) -> None:
    rid = _round(lab, "2026-05")
    lab.call("chair", "POST", f"/rounds/{rid}/close", 200)
    lab.call("chair", "POST", f"/rounds/{rid}/propose", 200)
    before = _totals(lab, rid)
    open_rid = _round(lab, "2026-06")
    changed = copy.deepcopy(GROWN_LAB)
    changed["pools"][0]["gpu"] = "B200"  # east's H100s are replaced by B200s, which no request names
    lab.call("admin", "POST", "/import", 201, json=changed)

    lab.call("chair", "POST", f"/rounds/{rid}/propose", 200)
    assert _totals(lab, rid) == before
    assert lab.call("chair", "GET", "/export", 200, params={"round_id": rid}).json()["pools"][0]["gpu"] == "H100"
    assert lab.call("chair", "GET", "/export", 200, params={"round_id": open_rid}).json()["pools"][0]["gpu"] == "B200"


def test_the_upgrade_freezes_rounds_already_past_open_with_the_lab_of_that_day(engine: Engine, lab: Lab) -> None:
    """Rounds closed before fairshare kept worlds get the best record left, the lab at the upgrade."""
    rid = _round(lab, "2026-05")
    lab.call("chair", "POST", f"/rounds/{rid}/close", 200)
    open_rid = _round(lab, "2026-06")
    url = engine.url
    if engine.dialect.name == "postgresql":
        pytest.skip("the downgrade/upgrade round trip runs on SQLite (one schema per test on PostgreSQL)")
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE rounds SET world = NULL"))
    from alembic import command

    from fairshare.store.db import alembic_config

    command.downgrade(alembic_config(engine), "0003")
    upgrade(engine)
    with create_engine(url).connect() as conn:
        worlds = dict(conn.execute(text("SELECT id, world FROM rounds")).all())
    assert worlds[open_rid] is None
    assert worlds[rid] is not None and "h100-east" in str(worlds[rid])
