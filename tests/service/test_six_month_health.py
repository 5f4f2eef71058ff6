"""Issue 17's "Done when": the six-month journey's genai and llama appear as starved where they were, with the why.

The six monthly rounds of tests/service/test_six_month_story.py (March to July, then August's round on the
grown lab), published through the REST API; then `GET /health`.  Whether a team was short is decided here
without health's code: each round's frozen world (`GET /rounds/{id}/scenario`) solved again by the org
tree's weights alone (no guarantees, limits, priorities, urgency, request weights or minimums; the
definition of docs/health.md), against what the round published (`GET /rounds/{id}/entitlements`).

Under today's engine genai gets every GPU it asks for in every month (its requests total 768, then 1,024
with agents): below its fair share in effective GPUs in March and April (its share went to H100-holding
guarantees; its A100s are worth less) but never short of GPUs, so never starved.  llama is short of its
fair share in March and April (85%: April's granted appeal is paid inside llama, by its other request; 98% in
May and June), never below 80%.  Health says exactly that; with the line drawn at 90% (`fairshare health
--starved-below 0.9` on the service's database) llama is starved in March and April, and only there.  It
names production-ai's guarantee as what held llama short in March, and OPT's 540B run dropped below its
minimum; both causes are checked by taking them away and solving March again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine
from tests.service.test_health_api import cli_url
from tests.service.test_six_month_story import Story, april, august, july, june, march, may
from tests.service.test_six_month_story import story as story  # noqa: F401  (the fixture)
from typer.testing import CliRunner

from fairshare.cli import app
from fairshare.engine import allocate
from fairshare.scenario import Scenario

STARVED_BELOW = 0.8  # health.starved_below's default (docs/health.md)
SHORT_BELOW = 0.95  # the committee's own line in issue 17 ("genai below 0.95 of its share")
WATCHED = ("genai", "llama")


def six_rounds(story: Story) -> dict[str, int]:
    """The story's months, each round published; August's round is the grown lab's (6,400 GPUs)."""
    march_id = march(story)
    april_id, april_appeal = april(story, march_id)
    may_id, _ = may(story, april_id, april_appeal)
    june_id = june(story)
    july_id = july(story, june_id)
    story.step(july_id, "close", "propose", "publish")
    august(story)
    august_id = story.round("2023-08", "2023-08-01")
    story.call("chair", "POST", f"/rounds/{august_id}/requests/copy-forward", 201)
    story.step(august_id, "close", "propose", "publish")
    return {
        "2023-03": march_id,
        "2023-04": april_id,
        "2023-05": may_id,
        "2023-06": june_id,
        "2023-07": july_id,
        "2023-08": august_id,
    }


def weights_alone(world: dict[str, Any]) -> Scenario:
    """The round's world with only the org tree's weights deciding (docs/health.md, `fair_share`)."""
    doc = dict(world)

    def bare(node: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in node.items() if k not in ("guarantee", "limit", "history")}
        out["children"] = [bare(c) for c in node.get("children", [])]
        return out

    doc["org"] = bare(world["org"])
    doc["requests"] = [
        {k: v for k, v in r.items() if k not in ("priority", "launch", "weight", "min")} for r in world["requests"]
    ]
    policy = {k: v for k, v in world.get("policy", {}).items() if k not in ("date", "priority_weights", "history")}
    doc["policy"] = policy
    return Scenario.model_validate(doc)


def effective(alloc: Any, node: str) -> float:
    return float(next(n.effective for n in alloc.nodes if n.name == node))


def published(story: Story, rid: int) -> dict[str, dict[str, Any]]:
    items = story.call("chair", "GET", f"/rounds/{rid}/entitlements", 200, params={"limit": 500}).json()["items"]
    return {e["node"]: e for e in items}


@dataclass
class Independent:
    """Per round and watched team, from the API and the engine alone: fair share by weights, what was
    published (effective GPUs, GPUs) and what was asked."""

    fair: dict[tuple[str, str], float]
    received: dict[tuple[str, str], float]
    short_of_gpus: dict[tuple[str, str], bool]  # demand > received GPUs

    def share(self, key: tuple[str, str]) -> float:
        return self.received[key] / self.fair[key]

    def starved(self, below: float) -> dict[str, list[str]]:
        return {
            team: [
                rnd
                for (rnd, t) in self.fair
                if t == team and self.share((rnd, t)) < below and self.short_of_gpus[rnd, t]
            ]
            for team in WATCHED
        }


def independent(story: Story, ids: dict[str, int]) -> Independent:
    out = Independent({}, {}, {})
    for name, rid in ids.items():
        fair = allocate(weights_alone(story.world(rid)), fractional=True)
        got = published(story, rid)
        for team in WATCHED:
            out.fair[name, team] = effective(fair, team)
            out.received[name, team] = got[team]["effective"]
            out.short_of_gpus[name, team] = got[team]["demand"] > got[team]["total"]
    return out


def starved_rounds(body: dict[str, Any]) -> dict[str, list[str]]:
    nodes = {n["name"]: n for n in body["nodes"]}
    return {team: [r["round"] for r in nodes[team]["rounds"] if r["starved"]] for team in WATCHED}


def test_health_after_six_months_flags_genai_and_llama_exactly_where_they_were_short(
    story: Story, engine: Engine
) -> None:
    ids = six_rounds(story)
    truth = independent(story, ids)
    body = story.call("chair", "GET", "/health", 200).json()
    assert body["rounds"] == list(ids)
    nodes = {n["name"]: n for n in body["nodes"]}
    for team in WATCHED:
        for row in nodes[team]["rounds"]:
            key = (row["round"], team)
            assert row["fair_share"] == pytest.approx(truth.fair[key], abs=1e-4), key
            assert row["received"] == pytest.approx(truth.received[key], abs=1e-4), key
            assert row["share_of_fair"] == pytest.approx(truth.share(key), abs=1e-4), key
            if truth.share(key) < SHORT_BELOW:  # short of its fair share: health says why, largest cause first
                sizes = [abs(w["effective"]) for w in row["why"]]
                assert sizes and sizes == sorted(sizes, reverse=True), key

    # Where they were: genai below 95% of its share (in effective GPUs) in March and April but given every GPU
    # it asked for; llama below 95% in March and April (85%), never under 80%.  Neither starved; both end `ok`.
    short = {t: [r for (r, tt) in truth.fair if tt == t and truth.share((r, tt)) < SHORT_BELOW] for t in WATCHED}
    assert short == {"genai": ["2023-03", "2023-04"], "llama": ["2023-03", "2023-04"]}
    assert starved_rounds(body) == truth.starved(STARVED_BELOW) == {"genai": [], "llama": []}
    for team in WATCHED:
        assert (nodes[team]["status"], nodes[team]["starved_streak"], nodes[team]["longest_streak"]) == ("ok", 0, 0)
        assert nodes[team]["debt"] > 0  # what they were short of is still owed, decaying

    # A committee drawing the line at 90% (`fairshare health --starved-below 0.9` on the service's database)
    # sees llama starved in March and April, where it was, and genai still never: it got every GPU it asked for.
    result = CliRunner().invoke(app, ["health", "--db", cli_url(engine), "--starved-below", "0.9", "--json"])
    assert result.exit_code == 0, result.output
    strict = json.loads(result.stdout)
    assert starved_rounds(strict) == truth.starved(0.9) == {"genai": [], "llama": ["2023-03", "2023-04"]}
    cli_nodes = {n["name"]: n for n in strict["nodes"]}
    assert (cli_nodes["llama"]["longest_streak"], cli_nodes["llama"]["status"]) == (2, "ok")
    cli_llama = next(n for n in strict["nodes"] if n["name"] == "llama")
    assert [r["share_of_fair"] for r in cli_llama["rounds"]] == [r["share_of_fair"] for r in nodes["llama"]["rounds"]]
    assert cli_llama["rounds"][0]["why"] == nodes["llama"]["rounds"][0]["why"]

    # The why of llama's March names production-ai's guarantee as its largest loss ...
    march_row = nodes["llama"]["rounds"][0]
    first = march_row["why"][0]
    assert (first["rule"], first["nodes"]) == ("guarantee", ["production-ai"]) and first["effective"] < 0
    assert "the guarantee of production-ai" in first["text"]
    # ... and it is a real cause: March's world without that guarantee gives llama more.
    world = story.world(ids["2023-03"])
    as_published = effective(allocate(Scenario.model_validate(world)), "llama")
    assert as_published == pytest.approx(march_row["received"], abs=1e-6)  # the world solves to what was published
    without = dict(world, org=drop_guarantee(world["org"], "production-ai"))
    assert effective(allocate(Scenario.model_validate(without)), "llama") > as_published + abs(first["effective"]) / 2

    # Its second cause, the minimum-size drop, names the request dropped (OPT's all-or-nothing 540B run): funded
    # without its minimum, that run would have left llama more, not less (FAIR would hold more of the lab).
    dropped = next(w for w in march_row["why"] if w["rule"] == "below_min")
    assert dropped["nodes"] == ["opt-540b"] and "opt-540b" in dropped["text"] and dropped["effective"] < 0
    unmin = [dict(r, min=None) if r["id"] == "opt-540b" else r for r in world["requests"]]
    assert effective(allocate(Scenario.model_validate(dict(world, requests=unmin))), "llama") > as_published

    # April's why also names the ruling in force on llama's request (its appeal, granted late, in May).
    april_why = {w["rule"]: w for w in nodes["llama"]["rounds"][1]["why"]}
    assert "overrides or rulings on its requests: llama-2-70b (appeal" in april_why["override"]["text"]


def drop_guarantee(node: dict[str, Any], name: str) -> dict[str, Any]:
    out = {k: v for k, v in node.items() if not (k == "guarantee" and node["name"] == name)}
    out["children"] = [drop_guarantee(c, name) for c in node.get("children", [])]
    return out
