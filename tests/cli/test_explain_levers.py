"""`fairshare explain`'s levers on the April case: a request 22 GPUs short of its minimum of 512."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fairshare.cli import app

APRIL = """
name: april
reference_gpu: A100
pools:
  - {name: east-a100, gpu: A100, site: east, gpus: 980}
  - {name: west-v100, gpu: V100, site: west, gpus: 64}
org:
  name: lab
  children:
    - name: fair
      children: [{name: llama}, {name: opt}]
    - name: product
      limit: {A100: 0}
      children: [{name: ads}]
requests:
  - {id: llama-2-70b, team: llama, gpus: 2048, min: 512, speed: {A100: 1.0}}
  - {id: opt-175b, team: opt, gpus: 2048, speed: {A100: 1.0}}
  - {id: ads-ranking, team: ads, gpus: 64, speed: {V100: 1.0}}
"""


def explain(tmp_path: Path, request: str) -> str:
    path = tmp_path / "april.yaml"
    path.write_text(APRIL)
    res = CliRunner().invoke(app, ["explain", str(path), request], env={"COLUMNS": "240"})
    assert res.exit_code == 0, res.output
    return " ".join(res.output.split())


def test_explain_finds_the_minimum_size_and_team_weight_fixes(tmp_path: Path) -> None:
    out = explain(tmp_path, "llama-2-70b")
    assert "minimum 512 -> 490 (the largest that is funded)" in out
    assert "weight of team llama 1 -> 1.1 (x1.1)" in out
    assert "opt -513.0" in out  # who pays for the team-weight fix


def test_levers_that_gain_nothing_are_listed_last_once(tmp_path: Path) -> None:
    out = explain(tmp_path, "llama-2-70b")
    table, _, rest = out.partition("No effect:")
    assert rest, "no-effect levers are listed"
    assert "weight of node fair (up to x64)" in rest and "weight of node fair" not in table
    assert rest.count("its request weight") == 1
    assert "re-solves (at most" in rest


def test_the_branch_line_compares_gpus_with_gpus(tmp_path: Path) -> None:
    out = explain(tmp_path, "llama-2-70b")
    assert "fair (980 of 4,096 GPUs, 980 effective)" in out
    assert "eff. of" not in out


def test_a_request_with_all_it_asked_for_says_so(tmp_path: Path) -> None:
    out = explain(tmp_path, "ads-ranking")
    assert "Nothing would give it more: it has all it asked for, on its fastest GPU type." in out
    assert "No effect" not in out


def test_explain_stops_searching_after_max_seconds_and_lists_what_it_did_not_search() -> None:
    """Each lever is a whole re-solve: on a large lab the search is bounded, and says what it left."""
    example = Path(__file__).resolve().parents[2] / "examples" / "meta-ai-2023.yaml"
    res = CliRunner().invoke(app, ["explain", str(example), "opt-540b", "--max-seconds", "1"], env={"COLUMNS": "240"})
    assert res.exit_code == 0, res.output
    assert "Not searched (stopped):" in res.output  # the whole search takes ~140 re-solves, many seconds


def test_explain_refuses_a_max_seconds_below_one() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "meta-ai-2023.yaml"
    res = CliRunner().invoke(app, ["explain", str(example), "opt-540b", "--max-seconds", "0"])
    assert res.exit_code == 2 and "--max-seconds" in res.output
