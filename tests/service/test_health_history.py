"""policy.history through the service: each round's nodes' history comes from the rounds published
before it, so a team owed GPUs gets a bounded weight boost, and its starved streak ends sooner."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.service.conftest import Clock, Lab, seed

from fairshare.service.api.app import create_app
from fairshare.store import models as m
from fairshare.store.db import session_factory

# llama's pre-training run is useless below 55 GPUs; by weights alone llama is entitled to 50 of
# research's 100, so without help it is dropped (0 GPUs) round after round while opt takes the rest.
LAB = """
name: history-lab
reference_gpu: H100
pools: [{name: h100, gpu: H100, gpus: 200}]
org:
  name: lab
  children:
    - name: research
      children: [{name: llama}, {name: opt}]
    - name: product
      children: [{name: genai}]
"""
CARRY = {"history": {"boost_per_debt": 1.0, "max_boost": 1.5}}


@pytest.fixture
def lab(engine: Engine) -> Iterator[Lab]:
    clock = Clock()
    tokens = seed(engine, LAB)
    with TestClient(create_app(engine=engine, clock=clock)) as client:
        yield Lab(client, clock, tokens, engine)


def publish_round(lab: Lab, name: str, policy: dict | None) -> int:
    body: dict = {"name": name} | ({"policy": policy} if policy is not None else {})
    rid = lab.call("chair", "POST", "/rounds", 201, json=body).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    for who, team, gpus, least in (
        ("llama-lead", "llama", 100, 55),
        ("opt-lead", "opt", 100, None),
        ("genai-lead", "genai", 200, None),
    ):
        req = {"id": f"{team}-{name}", "team": team, "gpus": gpus} | ({"min": least} if least else {})
        lab.call(who, "POST", f"/rounds/{rid}/requests", 201, json=req)
    for step in ("close", "propose", "publish"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    lab.clock.advance(days=30)
    return rid


def entitlement(lab: Lab, rid: int, node: str) -> dict:
    return lab.call("chair", "GET", f"/rounds/{rid}/entitlements/{node}", 200).json()


def llama(lab: Lab) -> dict:
    return {n["name"]: n for n in lab.call("chair", "GET", "/health", 200).json()["nodes"]}["llama"]


def test_with_history_on_a_starved_teams_streak_ends_after_one_round(lab: Lab) -> None:
    rids = [publish_round(lab, f"r{i}", CARRY) for i in range(1, 4)]
    h = llama(lab)
    assert [r["starved"] for r in h["rounds"]] == [True, False, False]
    assert (h["status"], h["starved_streak"], h["longest_streak"]) == ("ok", 0, 1)
    r1, r2 = entitlement(lab, rids[0], "llama"), entitlement(lab, rids[1], "llama")
    assert (r1["total"], r1["weight"]) == (0, 1.0)  # the first round has no past: no boost
    assert r2["weight"] == 1.5 and r2["total"] >= 55  # owed a round's fair share: x1.5, funded at its minimum
    assert "weight x1.50: received 0% of its fair share in the last round" in r2["reason"]
    why = h["rounds"][1]["why"]
    assert any(w["rule"] == "history" and "weight x1.50" in w["text"] for w in why)
    assert entitlement(lab, rids[1], "opt")["weight"] == 1.0  # opt was owed nothing


def test_without_history_the_streak_grows_and_no_weight_moves(lab: Lab) -> None:
    rids = [publish_round(lab, f"r{i}", None) for i in range(1, 4)]
    h = llama(lab)
    assert [r["starved"] for r in h["rounds"]] == [True, True, True]
    assert (h["status"], h["starved_streak"]) == ("starved", 3)
    assert h["debt"] > 0  # owed, yet not carried
    for rid in rids:
        for node in ("research", "llama", "opt", "product", "genai"):
            ent = entitlement(lab, rid, node)
            assert ent["weight"] == 1.0 and "weight x" not in ent["reason"]


def test_the_history_is_kept_with_the_rounds_world(lab: Lab) -> None:
    publish_round(lab, "r1", CARRY)
    rid = publish_round(lab, "r2", CARRY)
    publish_round(lab, "r3", CARRY)  # published after r2: not part of r2's past
    lab.call("chair", "POST", f"/rounds/{rid}/propose", 409)  # published: no re-proposal
    with session_factory(lab.engine)() as s:
        world = s.get(m.Round, rid).world
    assert world["history_from"] == ["r1"]
    (llama_node,) = [c for b in world["org"]["children"] for c in b.get("children", []) if c["name"] == "llama"]
    assert llama_node["history"]["debt"] == 50.0 and llama_node["history"]["rounds"] == 1
