"""`fairshare health` from scenario files: the table, --json, --csv, --rounds, and bad input (exit 2)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fairshare.cli import app

runner = CliRunner()

ROUND = """
name: round-{i}
pools: [{{name: h100, gpu: H100, gpus: 200}}]
org:
  name: {root}
  children:
    - name: research
      children: [{{name: b1}}, {{name: b2}}]
    - name: prod
      children: [{{name: g{guarantee}}}, {{name: quiet}}]
requests:
  - {{id: b1-train, team: b1, gpus: 100}}
  - {{id: b2-train, team: b2, gpus: 100}}
  - {{id: g-serve, team: g, gpus: 200}}
"""


def write_rounds(tmp_path: Path, n: int = 4, root: str = "lab") -> list[str]:
    paths = []
    for i in range(1, n + 1):
        p = tmp_path / f"r{i}.yaml"
        p.write_text(ROUND.format(i=i, root=root, guarantee="" if i == 1 else ", guarantee: {H100: 150}"))
        paths.append(str(p))
    return paths


def test_json_has_the_documented_fields_and_the_starved_teams(tmp_path: Path) -> None:
    result = runner.invoke(app, ["health", *write_rounds(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["rounds"] == ["round-1", "round-2", "round-3", "round-4"]
    nodes = {n["name"]: n for n in body["nodes"]}
    for team in ("b1", "b2"):
        assert [r["share_of_fair"] for r in nodes[team]["rounds"]] == [1.0, 0.5, 0.5, 0.5]
        assert (nodes[team]["status"], nodes[team]["starved_streak"]) == ("starved", 3)
        assert nodes[team]["rounds"][-1]["why"][0]["nodes"] == ["g"]
    assert nodes["g"]["status"] == "ok"
    assert nodes["quiet"]["status"] == "no_demand"
    assert set(nodes["b1"]) >= {"name", "parent", "status", "starved_streak", "debt", "rounds"}
    assert set(nodes["b1"]["rounds"][0]) >= {
        "round", "demand", "fair_share", "fair_share_gpus", "received", "received_gpus", "used", "share_of_fair", "why"
    }  # fmt: skip


def test_the_table_shows_shares_status_and_why(tmp_path: Path) -> None:
    result = runner.invoke(app, ["health", *write_rounds(tmp_path)])
    assert result.exit_code == 0, result.output
    b1 = next(line for line in result.output.splitlines() if " b1 " in line and "%" in line)
    cells = [c.strip() for c in b1.strip("│ ").split("│")]
    assert cells == [
        "b1",
        "100%",
        "50%",
        "50%",
        "50%",
        "starved",
        "3",
        f"{25 * (1 + 0.5 ** (1 / 3) + 0.5 ** (2 / 3)):.1f}",
    ]
    assert "the guarantee of g" in result.output


def test_csv_has_a_row_per_node_and_round(tmp_path: Path) -> None:
    result = runner.invoke(app, ["health", *write_rounds(tmp_path), "--csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 7 * 4
    b1 = [r for r in rows if r["node"] == "b1"]
    assert [r["share_of_fair"] for r in b1] == ["1.0", "0.5", "0.5", "0.5"]
    assert b1[-1]["status"] == "starved" and "guarantee of g" in b1[-1]["why"]


def test_rounds_takes_the_last_n_files(tmp_path: Path) -> None:
    result = runner.invoke(app, ["health", *write_rounds(tmp_path), "--rounds", "2", "--json"])
    body = json.loads(result.output)
    assert body["rounds"] == ["round-3", "round-4"]
    assert {n["name"]: n["starved_streak"] for n in body["nodes"]}["b1"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--rounds", "0"], "--rounds must be at least 1"), (["--starved-below", "2"], "starved_below")],
)
def test_bad_options_exit_2_naming_them(tmp_path: Path, extra: list[str], message: str) -> None:
    result = runner.invoke(app, ["health", *write_rounds(tmp_path, 2), *extra])
    assert result.exit_code == 2
    assert message in result.output


def test_a_file_that_does_not_parse_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("pools: [\n")
    result = runner.invoke(app, ["health", *write_rounds(tmp_path, 2), str(bad)])
    assert result.exit_code == 2
    assert "broken.yaml" in result.output


def test_files_of_different_labs_are_refused(tmp_path: Path) -> None:
    ours = write_rounds(tmp_path, 1)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    theirs = write_rounds(other_dir, 2, root="elsewhere")[1:]
    result = runner.invoke(app, ["health", *ours, *theirs])
    assert result.exit_code == 2
    assert theirs[0] in result.output and "'elsewhere'" in result.output  # the file, not only its round


def test_pools_and_org_may_change_between_files(tmp_path: Path) -> None:
    """A pool grows and a team joins between rounds: one lab still, the newcomer from its first round."""
    paths = write_rounds(tmp_path, 2)
    grown = Path(paths[1])
    text = grown.read_text().replace("gpus: 200}", "gpus: 300}").replace("{name: quiet}", "{name: quiet}, {name: new}")
    grown.write_text(text + "  - {id: new-run, team: new, gpus: 50}\n")
    result = runner.invoke(app, ["health", *paths, "--json"])
    assert result.exit_code == 0, result.output
    nodes = {n["name"]: n for n in json.loads(result.output)["nodes"]}
    assert [r["round"] for r in nodes["new"]["rounds"]] == ["round-2"]
    assert nodes["lab"]["rounds"][-1]["received_gpus"] == 300


def test_round_names_are_for_the_database(tmp_path: Path) -> None:
    result = runner.invoke(app, ["health", *write_rounds(tmp_path, 1), "--round", "round-9"])
    assert result.exit_code == 2 and "--round" in result.output


def test_without_files_or_a_database_it_says_so_and_creates_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAIRSHARE_DATABASE_URL", raising=False)
    result = runner.invoke(app, ["health"])
    assert result.exit_code == 2
    assert "no database at ./fairshare.db: give scenario files" in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []


def test_rounds_that_share_a_scenario_name_are_named_by_their_files(tmp_path: Path) -> None:
    paths = write_rounds(tmp_path, 2)
    for p in paths:  # both files say `name: lab-month`
        Path(p).write_text(Path(p).read_text().replace("name: round-", "name: lab-month #"))
    result = runner.invoke(app, ["health", *paths, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rounds"] == ["r1.yaml", "r2.yaml"]
