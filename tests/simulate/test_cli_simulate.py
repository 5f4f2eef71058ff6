"""`fairshare simulate` end to end on the bundled sample."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from fairshare.cli import app

DATA = Path(__file__).parent / "data"
runner = CliRunner()


def test_simulate_writes_table_csv_json_plots_and_html(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(app, ["simulate", str(DATA), "--policy", "fifo", "--policy", "fairshare",
                              "--cluster", "8:8:8", "--out", str(out), "--round-minutes", "10"])
    assert res.exit_code == 0, res.output
    assert "policy comparison" in res.output and "fairshare" in res.output
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["policy"] for r in rows] == ["fifo", "fairshare"] and all(r["jobs"] == "22" for r in rows)
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["run"]["round_minutes"] == 10 and len(doc["policies"][1]["teams"]) == 2
    for png in ("jct_cdf.png", "team_share.png"):
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
