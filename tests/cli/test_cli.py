"""The `fairshare` command line: output formats, explain, diff, and bad input exiting 2."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fairshare.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
META = str(EXAMPLES / "meta-ai-2023.yaml")
EQUAL = str(EXAMPLES / "meta-ai-2023-llama-equal.yaml")
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def flat(text: str) -> str:
    """Undo Rich's line wrapping."""
    return " ".join(text.split())


# --- allocate ------------------------------------------------------------------------------------


def test_allocate_prints_the_teams() -> None:
    res = run("allocate", META)
    assert res.exit_code == 0, res.output
    for team in ("llama", "opt", "assistants", "ads", "feed", "reels"):
        assert team in res.output


@pytest.mark.parametrize("width", [80, 100, 160, 240])
def test_the_allocation_table_fits_the_terminal_without_cropping_a_number(width: int) -> None:
    """The table's widths are computed up front (fast for big labs); a narrow terminal wraps or
    squeezes text, but every request's demand, GPUs and effective figure stay whole."""
    from rich.console import Console

    from fairshare.cli._render import _cell, print_allocation
    from fairshare.engine import allocate
    from fairshare.scenario.files import load_scenario

    alloc = allocate(load_scenario(META))
    buffer = io.StringIO()
    print_allocation(alloc, Console(file=buffer, width=width))
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    cells = [[c.strip() for c in line.split("│")] for line in lines if line.startswith("│")]
    for r in alloc.requests:
        assert any(
            f"{r.demand:,}" in row and _cell(r.total) in row and f"{r.effective:,.1f}" in row for row in cells
        ), r.id


def test_allocate_json_has_the_documented_keys() -> None:
    res = run("allocate", META, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {"requests", "nodes", "pools", "fairness", "stats"} <= set(data)
    for r in data["requests"]:
        assert {"id", "team", "gpus", "effective", "weight", "reason"} <= set(r)
        assert {"code", "text"} <= set(r["reason"])
    assert {"solve_seconds", "lp_solves", "levels"} <= set(data["stats"])
    assert {r["id"] for r in data["requests"]} >= {"llama-2-70b", "opt-540b"}


def test_allocate_json_gpus_are_whole_numbers() -> None:
    data = json.loads(run("allocate", META, "--json").stdout)
    assert all(float(v).is_integer() for r in data["requests"] for v in r["gpus"].values())


def test_allocate_fractional_json_is_marked_fractional() -> None:
    res = run("allocate", META, "--json", "--fractional")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["fractional"] is True


def test_allocate_csv_has_a_header_and_rows() -> None:
    res = run("allocate", META, "--csv")
    assert res.exit_code == 0, res.output
    rows = list(csv.reader(io.StringIO(res.stdout)))
    assert rows[0][:4] == ["request", "team", "pool", "gpus"]
    assert len(rows) > 1
    assert {row[0] for row in rows[1:]} >= {"llama-2-70b", "opt-540b"}


def test_allocate_json_and_csv_together_is_a_usage_error() -> None:
    res = run("allocate", META, "--json", "--csv")
    assert res.exit_code == 2
    assert "Traceback" not in res.output


# --- validate, explain, diff, schema ---------------------------------------------------------------


def test_validate_the_example_exits_0() -> None:
    res = run("validate", META)
    assert res.exit_code == 0, res.output
    assert "ok" in res.output


def test_explain_a_request_says_why() -> None:
    res = run("explain", META, "llama-2-70b")
    assert res.exit_code == 0, res.output
    assert "Why" in res.output
    assert "llama-2-70b" in res.output


def test_explain_a_below_min_request_says_not_funded() -> None:
    res = run("explain", META, "opt-540b")
    assert res.exit_code == 0, res.output
    assert "below_min" in res.output


def test_explain_an_unknown_request_exits_2_and_says_so() -> None:
    res = run("explain", META, "no-such-request")
    assert res.exit_code == 2
    out = flat(res.output)
    assert "no request 'no-such-request'" in out
    assert "Traceback" not in res.output


def test_diff_lists_llama() -> None:
    res = run("diff", META, EQUAL)
    assert res.exit_code == 0, res.output
    assert "llama" in res.output


def test_diff_json_parses_and_changes_balance() -> None:
    res = run("diff", META, EQUAL, "--json")
    assert res.exit_code == 0, res.output
    changes = json.loads(res.stdout)
    assert any(c["name"] == "llama" and c["delta"] < 0 for c in changes)


def test_schema_prints_json_schema() -> None:
    res = run("schema")
    assert res.exit_code == 0
    assert "properties" in json.loads(res.stdout)


# --- bad input: exit 2, file and line, no traceback ------------------------------------------------

GOOD = """\
name: tiny
pools:
  - {name: p, gpu: A, gpus: 10}
org:
  name: root
  children:
    - name: t1
    - name: t2
requests:
  - {id: r1, team: t1, gpus: 4}
  - {id: r2, team: t2, gpus: 4}
"""

BAD = {
    "yaml_syntax": (GOOD.replace("  - {id: r2, team: t2, gpus: 4}", "  - {id: r2, team: t2, gpus: 4"), None),
    "unknown_team": (GOOD.replace("team: t2", "team: nobody"), 11),
    "negative_gpus": (GOOD.replace("{id: r2, team: t2, gpus: 4}", "{id: r2, team: t2, gpus: -4}"), 11),
    "speed_for_unknown_type": (GOOD.replace("gpus: 4}\n", "gpus: 4, speed: {Z: 2}}\n", 1), 10),
    "duplicate_node": (GOOD.replace("    - name: t2\n", "    - name: t2\n    - name: t1\n"), 9),
    "date_that_does_not_exist": (
        GOOD.replace("{id: r2, team: t2, gpus: 4}", "{id: r2, team: t2, gpus: 4, launch: 2023-02-30}"),
        11,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_exits_2_with_file_and_line_and_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    text, line = BAD[case]
    monkeypatch.chdir(tmp_path)  # a short relative path: Rich wraps long tokens at 80 columns
    path = f"{case}.yaml"
    Path(path).write_text(text)
    res = run("allocate", path)
    assert res.exit_code == 2, res.output
    out = flat(res.output)
    assert "Traceback" not in res.output
    assert f"{path}:" in out
    if line is not None:
        assert f"{path}:{line}" in out, out


def test_yaml_syntax_error_reports_a_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("syntax.yaml").write_text(BAD["yaml_syntax"][0])
    res = run("allocate", "syntax.yaml")
    assert res.exit_code == 2
    out = flat(res.output)
    assert any(f"syntax.yaml:{n}" in out for n in range(9, 13)), out
    assert "YAML" in out


def test_duplicate_node_message_names_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("dup.yaml").write_text(BAD["duplicate_node"][0])
    res = run("validate", "dup.yaml")
    assert res.exit_code == 2
    assert "duplicate node name 't1'" in flat(res.output)


def test_bad_file_with_a_long_path_keeps_file_and_line_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / ("a-rather-long-directory-name-for-scenarios" * 2) / "unknown_team.yaml"
    path.parent.mkdir()
    path.write_text(BAD["unknown_team"][0])
    res = run("allocate", str(path))
    assert res.exit_code == 2
    assert f"{path}:11" in res.output


@pytest.mark.parametrize("command", ["allocate", "validate"])
def test_infeasible_guarantees_exit_2_naming_pools_and_nodes(tmp_path: Path, command: str) -> None:
    text = GOOD.replace(
        "    - name: t1\n    - name: t2\n", "    - {name: t1, guarantee: {A: 6}}\n    - {name: t2, guarantee: {A: 6}}\n"
    )
    text = text.replace("gpus: 4}", "gpus: 40}")  # both can use their guarantee, so both floors are 6
    path = tmp_path / "infeasible.yaml"
    path.write_text(text)
    res = run(command, str(path))
    assert res.exit_code == 2, res.output
    out = flat(res.output)
    assert "Traceback" not in res.output
    assert "guarantee" in out and "t1" in out and "t2" in out and " p" in out


def test_missing_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    res = run("allocate", str(path))
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert str(path) in flat(res.output)


def test_the_good_tiny_file_allocates(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    res = run("allocate", str(path), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {r["id"]: r["gpus"] for r in data["requests"]} == {"r1": {"p": 4}, "r2": {"p": 4}}


def test_infeasible_guarantees_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = GOOD.replace(
        "    - name: t1\n    - name: t2\n", "    - {name: t1, guarantee: {A: 6}}\n    - {name: t2, guarantee: {A: 6}}\n"
    )
    Path("infeasible.yaml").write_text(text.replace("gpus: 4}", "gpus: 40}"))
    res = run("allocate", "infeasible.yaml")
    assert res.exit_code == 2
    assert "infeasible.yaml:" in flat(res.output)
