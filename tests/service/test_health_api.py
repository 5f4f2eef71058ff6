"""GET /health and the health gauges on /metrics, after rounds published through the service."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from tests.service.conftest import Clock, Lab, seed
from typer.testing import CliRunner

from fairshare.cli import app
from fairshare.scenario.files import loads_scenario
from fairshare.service.api.app import create_app
from fairshare.store import models as m
from fairshare.store.db import session_factory
from fairshare.store.repo import import_scenario

LAB = """
name: health-lab
reference_gpu: H100
pools: [{name: h100, gpu: H100, gpus: 200}]
org:
  name: lab
  children:
    - name: research
      children: [{name: llama}, {name: opt}]
    - name: product
      children: [{name: genai, GUARANTEE}, {name: quiet}]
"""


def world(guarantee: int | None) -> str:
    return LAB.replace("GUARANTEE", f"guarantee: {{H100: {guarantee}}}" if guarantee else "weight: 1")


@pytest.fixture
def lab(engine: Engine) -> Iterator[Lab]:
    clock = Clock()
    tokens = seed(engine, world(None))
    with TestClient(create_app(engine=engine, clock=clock)) as client:
        yield Lab(client, clock, tokens, engine)


def publish_round(lab: Lab, name: str, guarantee: int | None) -> int:
    """The lab's world (genai's guarantee) as of this round, then a round where llama, opt and genai
    ask for more than there is, published a week after the previous one."""
    with session_factory(lab.engine)() as s:
        import_scenario(s, loads_scenario(world(guarantee), "lab.yaml"))
        s.commit()
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": name}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    for who, key, team, gpus in (
        ("llama-lead", "l", "llama", 100),
        ("opt-lead", "o", "opt", 100),
        ("genai-lead", "g", "genai", 200),
    ):
        lab.call(who, "POST", f"/rounds/{rid}/requests", 201, json={"id": f"{key}-{name}", "team": team, "gpus": gpus})
    for step in ("close", "propose", "publish"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    lab.clock.advance(days=7)
    return rid


@pytest.fixture
def four(lab: Lab) -> Lab:
    for i in range(1, 5):
        publish_round(lab, f"r{i}", None if i == 1 else 150)
    return lab


def test_a_sibling_branchs_guarantee_shows_two_teams_starved_three_rounds(four: Lab) -> None:
    body = four.call("llama-member", "GET", "/health", 200).json()
    assert body["rounds"] == ["r1", "r2", "r3", "r4"]
    nodes = {n["name"]: n for n in body["nodes"]}
    for team in ("llama", "opt"):
        assert [r["share_of_fair"] for r in nodes[team]["rounds"]] == [1.0, 0.5, 0.5, 0.5]
        assert (nodes[team]["status"], nodes[team]["starved_streak"]) == ("starved", 3)
        why = nodes[team]["rounds"][-1]["why"]
        assert why[0]["rule"] == "guarantee" and why[0]["nodes"] == ["genai"]
    assert nodes["genai"]["status"] == "ok"
    assert nodes["quiet"]["status"] == "no_demand"
    assert nodes["llama"]["parent"] == "research"
    assert set(nodes["llama"]["rounds"][0]) >= {
        "round", "demand", "fair_share", "fair_share_gpus", "received", "received_gpus", "used", "share_of_fair", "why"
    }  # fmt: skip


def test_the_last_n_rounds_and_rounds_by_name(four: Lab) -> None:
    body = four.call("chair", "GET", "/health?rounds=2", 200).json()
    assert body["rounds"] == ["r3", "r4"]
    assert {n["name"]: n["starved_streak"] for n in body["nodes"]}["llama"] == 2
    body = four.call("chair", "GET", "/health?round=r1&round=r2", 200).json()
    assert body["rounds"] == ["r1", "r2"]


def test_bad_input_is_refused_naming_it(four: Lab) -> None:
    r = four.call("chair", "GET", "/health?rounds=0", 422)
    assert "rounds" in r.text
    r = four.call("chair", "GET", "/health?round=r1&round=r9", 404)
    assert "'r9'" in r.json()["detail"]


def test_no_published_round_yet_is_a_404(lab: Lab) -> None:
    r = lab.call("chair", "GET", "/health", 404)
    assert "no published rounds" in r.json()["detail"]


def test_used_counts_the_usage_while_the_round_was_in_force(four: Lab) -> None:
    start = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)  # r4 was published on 22 November, 9:00
    with session_factory(four.engine)() as s:
        for day in range(-1, 3):
            at = start + dt.timedelta(days=day)
            s.add(
                m.Usage(
                    source="t",
                    node="llama",
                    gpu="H100",
                    period_start=at,
                    period_end=at + dt.timedelta(days=1),
                    gpu_hours=240.0,
                )
            )
        s.commit()
    nodes = {n["name"]: n for n in four.call("chair", "GET", "/health", 200).json()["nodes"]}
    r3, r4 = nodes["llama"]["rounds"][-2:]
    # r4 is in force from 22 Nov 9:00 until now (29 Nov 9:00): 15/24 of the 22nd, all of the 23rd and 24th
    assert r4["used"] == pytest.approx(240 * (15 / 24 + 2))
    assert r3["used"] == pytest.approx(240 * (1 + 9 / 24))  # the 21st, and the 22nd until 9:00
    assert nodes["research"]["rounds"][-1]["used"] == pytest.approx(r4["used"])  # a branch used its teams' hours


def gauge(text: str, name: str, team: str) -> float | None:
    match = re.search(rf'^{name}{{team="{team}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


def test_metrics_give_the_newest_rounds_share_streak_and_debt(four: Lab) -> None:
    text = four.client.get("/metrics").text
    assert gauge(text, "fairshare_team_share_of_fair", "llama") == 0.5
    assert gauge(text, "fairshare_team_starved_streak", "llama") == 3
    assert gauge(text, "fairshare_team_starved_streak", "genai") == 0
    assert gauge(text, "fairshare_team_debt", "llama") == pytest.approx(25 * (1 + 0.5 ** (1 / 3) + 0.5 ** (2 / 3)))
    assert gauge(text, "fairshare_team_share_of_fair", "quiet") is None  # no demand, no share
    publish_round(four, "r5", None)  # the guarantee goes: the streak ends, the gauges follow
    text = four.client.get("/metrics").text
    assert gauge(text, "fairshare_team_starved_streak", "llama") == 0
    assert gauge(text, "fairshare_team_share_of_fair", "llama") == 1.0


def cli_url(engine: Engine) -> str:
    """The test database as `--db` names it (on PostgreSQL, with the test's own schema)."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        with engine.connect() as conn:
            schema = conn.execute(text("select current_schema()")).scalar_one()
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def test_the_cli_on_the_services_database_says_what_the_api_says(four: Lab) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["health", "--db", cli_url(four.engine), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == four.call("chair", "GET", "/health", 200).json()
    table = runner.invoke(app, ["health", "--db", cli_url(four.engine), "--rounds", "3"])
    llama = next(line for line in table.output.splitlines() if " llama " in line)
    assert [c.strip() for c in llama.strip("│ ").split("│")][:6] == ["llama", "50%", "50%", "50%", "starved", "3"]
    assert "the guarantee of genai" in table.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--round", "r1", "--round", "r9"], "no published round named 'r9'; published rounds: r1, r2, r3, r4"),
        (["--rounds", "0"], "--rounds must be at least 1, not 0"),
    ],
)
def test_the_cli_refuses_bad_rounds_naming_them(four: Lab, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["health", "--db", cli_url(four.engine), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


@pytest.mark.parametrize(("gpu_hours", "status"), [(1_000.0, "idle"), (20_000.0, "ok")])
def test_a_team_that_used_under_half_of_what_it_received_is_idle(four: Lab, gpu_hours: float, status: str) -> None:
    """genai received 150 GPUs in r4, in force for 7 days (25,200 GPU-hours): idle below half of that."""
    start = dt.datetime(2026, 11, 22, 9, tzinfo=dt.UTC)  # r4's publication; now is a week later
    with session_factory(four.engine)() as s:
        s.add(
            m.Usage(
                source="t",
                node="genai",
                gpu="H100",
                period_start=start,
                period_end=start + dt.timedelta(days=7),
                gpu_hours=gpu_hours,
            )
        )
        s.commit()
    nodes = {n["name"]: n for n in four.call("chair", "GET", "/health", 200).json()["nodes"]}
    assert nodes["genai"]["rounds"][-1]["used"] == pytest.approx(gpu_hours)
    assert nodes["genai"]["status"] == status
    assert nodes["llama"]["status"] == "starved"  # starved wins over idle: it got too little to be idle with
