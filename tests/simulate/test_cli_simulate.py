"""`fairshare simulate` end to end on the bundled sample."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fairshare.cli import app

DATA = Path(__file__).parent / "data"
runner = CliRunner()


def test_simulate_writes_table_csv_json_plots_and_html(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "simulate",
            str(DATA),
            "--policy",
            "fifo",
            "--policy",
            "fairshare",
            "--cluster",
            "8:8:8",
            "--out",
            str(out),
            "--round-minutes",
            "10",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "policy comparison" in res.output and "fairshare" in res.output
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["policy"] for r in rows] == ["fifo", "fairshare"] and all(r["jobs"] == "22" for r in rows)
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["run"]["round_minutes"] == 10 and len(doc["policies"][1]["teams"]) == 2
    for png in ("jct_cdf.png", "team_heatmap.png", "worst_teams.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and 'src="http' not in page and "<script" not in page


def test_unknown_policy_is_one_clear_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["simulate", str(DATA), "-p", "lottery", "-c", "8:8:8", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "unknown policy 'lottery'" in res.output


def test_cluster_too_small_for_a_gang_is_a_usage_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["simulate", str(DATA), "-p", "fifo", "-c", "4:4:4", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "needs 8 GPUs" in res.output


def test_missing_trace_is_a_usage_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["simulate", str(tmp_path / "nope.trace"), "-c", "8", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no such file" in res.output


@pytest.mark.parametrize(
    "option",
    [
        ["--round-minutes", "nan"],
        ["--round-minutes", "inf"],
        ["--restart-seconds", "inf"],
        ["--restart-seconds", "nan"],
        ["--half-life-hours", "nan"],
        ["--margin", "-0.5"],
        ["--margin", "nan"],
        ["--min-run-hours", "inf"],
        ["--min-run-hours", "-1"],
        ["--wait-margin", "1.5"],
        ["--wait-margin", "nan"],
        ["--wait-margin", "never"],
        ["--fit", "pool"],
        ["--unit", "hours"],
    ],
)
def test_non_finite_options_exit_2_and_write_nothing(tmp_path: Path, option: list[str]) -> None:
    """`--restart-seconds inf` made the replay loop for ever; nan slipped past `<= 0` checks."""
    out = tmp_path / "out"
    res = runner.invoke(app, ["simulate", "synthetic:20", "-c", "4:4:4", "-o", str(out), *option])
    assert res.exit_code == 2 and option[0] in res.output, res.output
    assert not out.exists()


def test_an_out_directory_that_cannot_be_made_fails_before_the_replay(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    res = runner.invoke(app, ["simulate", "synthetic:20", "-c", "4:4:4", "-o", str(tmp_path / "a-file" / "sub")])
    assert res.exit_code == 2 and "cannot create the directory" in res.output and "policy comparison" not in res.output


def test_team_names_beyond_ascii_replay_under_every_policy(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(
        "job_id,user,vc,gpu_num,submit_time,start_time,end_time\n"
        "1,u,émile,2,0,0,100\n2,u,研究,1,0,0,100\n3,u,研究-b,1,10,10,100\n",
        encoding="utf-8",
    )
    res = runner.invoke(app, ["simulate", str(trace), "-c", "v100=4", "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    teams = {r["team"] for r in csv.DictReader((tmp_path / "out" / "teams.csv").open(encoding="utf-8"))}
    assert teams == {"émile", "研究", "研究-b"}


def test_a_path_with_brackets_is_printed_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Error messages are not Rich markup: '[/x]' crashed the printer, '[bold]' vanished."""
    monkeypatch.chdir(tmp_path)  # a short relative path: Rich wraps long tokens at 80 columns
    for name in ("[/x].csv", "[bold]nope.csv"):
        res = runner.invoke(app, ["simulate", name, "-c", "4:4:4", "-o", "o"])
        assert res.exit_code == 2 and f"error: {name}: no such file or directory" in res.output, res.output


def test_an_output_name_taken_by_a_directory_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "report.html").mkdir(parents=True)
    res = runner.invoke(app, ["simulate", "synthetic:20", "-c", "4:4:4", "-o", str(out)])
    assert res.exit_code == 2 and "report.html is a directory" in " ".join(res.output.split())
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]


def test_gavel_subset_drops_the_jobs_gavels_simulator_cannot_replay(tmp_path: Path) -> None:
    res = runner.invoke(app, ["simulate", str(DATA), "-p", "fifo", "-c", "8:8:8", "-o", str(tmp_path / "a")])
    sub = runner.invoke(
        app, ["simulate", str(DATA), "-p", "fifo", "-c", "8:8:8", "-o", str(tmp_path / "b"), "--gavel-subset"]
    )
    assert res.exit_code == 0 and sub.exit_code == 0, sub.output
    assert res.output.startswith("22 jobs") and sub.output.startswith("20 jobs"), sub.output


def test_the_waiting_teams_margin_reaches_the_policy_and_the_metadata(tmp_path: Path) -> None:
    args = ["simulate", "synthetic:60:3:20", "-c", "8:8:8", "-p", "fairshare"]
    # off: gangs move as soon as the shares change
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "a"), "--wait-margin", "off"])
    assert res.exit_code == 0, res.output
    got = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert got["policies"][0]["preemptions"] > 0 and got["run"]["wait_margin"] is None
    # a margin of 1: no team is ever below 0 x its share, so no gang is ever taken
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "b"), "--wait-margin", "1"])
    assert res.exit_code == 0, res.output
    got = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert got["policies"][0]["preemptions"] == 0
    assert got["run"]["wait_margin"] == 1.0 and got["run"]["fit"] == "total" and got["run"]["unit"] == "gpus"
