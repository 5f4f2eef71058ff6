"""The simulator's teams over the committee's rounds: the replay cut into health periods, each read
as one round of `fairshare health` (starved, streak, debt by fairshare.engine.health's rules)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from tests.simulate.sim_helpers import job, run
from typer.testing import CliRunner

from fairshare.cli import app
from fairshare.engine.health import HealthRules
from fairshare.simulate.metrics import DAY, compute, periods, team_health

DATA = Path(__file__).parent / "data"


def hog_and_queued():
    """FIFO on 8 GPUs: `a` holds all 8 for three days; `b`'s 4-GPU job, arriving just after, waits
    for it and then runs a day alone.  Hourly rounds."""
    jobs = [job("a1", "a", 0, 8, 3 * DAY, v100=1.0), job("b1", "b", 100, 4, DAY, v100=1.0)]
    return run("fifo", jobs, "v100=8", round_seconds=3600)


def test_a_team_queued_behind_a_hog_is_starved_every_day_it_waits() -> None:
    p = periods(hog_and_queued(), DAY)
    assert p.teams == ["a", "b"] and len(p.starts) == 4
    b = p.teams.index("b")
    assert list(p.got[:, b]) == [0, 0, 0, 4]  # average GPUs per day
    assert p.fair[1:, b].tolist() == [4, 4, 4]  # half the cluster while both ask, all it asks after
    assert p.fair[0, b] == pytest.approx(4 - 4 / 24)  # it waited the first hourly round to arrive
    health = team_health(p)
    assert health["b"][:2] == (3, 3) and health["a"][:2] == (0, 0)
    owed = [4 - 4 / 24, 4, 4, 0]  # fair share - received, halved every 3 days of age
    assert health["b"][2] == pytest.approx(sum(o * 0.5 ** ((3 - i) / 3) for i, o in enumerate(owed)), abs=1e-6)
    assert health["a"][2] == pytest.approx(-health["b"][2], abs=1e-6)  # a got what b was owed


def test_the_period_is_the_round_longer_periods_shorter_streaks() -> None:
    res = hog_and_queued()
    by_day = {t.team: t for t in compute(res, health_period_days=1).teams}
    by_three = {t.team: t for t in compute(res, health_period_days=3).teams}
    assert by_day["b"].longest_starved_streak == 3
    assert by_three["b"].longest_starved_streak == 1  # one 3-day round, starved; the next has its day alone
    lenient = team_health(periods(res, DAY), HealthRules(starved_below=0.01))
    assert lenient["b"][:2] == (3, 3)  # received nothing: starved under any threshold


def test_teams_csv_has_streak_and_debt_and_the_report_the_heat_map(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            str(DATA),
            "-p",
            "fifo",
            "-p",
            "kueue",
            "-c",
            "8:8:8",
            "-o",
            str(out),
            "--health-period-days",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "teams.csv").open()))
    assert {"longest_starved_streak", "starved_periods", "debt"} <= set(rows[0])
    assert all(int(r["longest_starved_streak"]) <= int(r["starved_periods"]) for r in rows)
    for png in ("team_heatmap.png", "worst_teams.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert 'alt="team_heatmap"' in page and 'alt="worst_teams"' in page and "1-day periods" in page


@pytest.mark.parametrize("days", ["0", "-1", "nan", "4000"])
def test_a_bad_health_period_is_refused_naming_the_option(tmp_path: Path, days: str) -> None:
    res = CliRunner().invoke(
        app, ["simulate", str(DATA), "-p", "fifo", "-c", "8:8:8", "-o", str(tmp_path), "--health-period-days", days]
    )
    assert res.exit_code == 2 and "--health-period-days" in res.output
