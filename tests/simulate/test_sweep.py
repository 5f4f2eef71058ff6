"""`fairshare sweep`: the grid, local processes, Ray, and the same rows from both."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fairshare.cli import app
from fairshare.simulate import sweep as sw
from fairshare.simulate import sweep_report as sr

runner = CliRunner()
TRACE = "synthetic:24:2:12"
GRID = dict(
    policies=["fifo", "fairshare"], clusters=["8:8:8", "v100=8,k80=16"], round_minutes=[6.0, 15.0], seeds=[0, 1]
)


def test_grid_is_every_combination_in_a_fixed_order() -> None:
    points = sw.grid(TRACE, **GRID)
    assert len(points) == 16 and [p.index for p in points] == list(range(16))
    clusters = ["v100=8,p100=8,k80=8", "v100=8,k80=16"]  # specs written out
    assert {(p.policy, p.cluster, p.round_minutes, p.seed) for p in points} == {
        (p, c, r, s) for p in GRID["policies"] for c in clusters for r in GRID["round_minutes"] for s in GRID["seeds"]
    }
    assert sw.grid("traces/seed={seed}", ["fifo"], ["8"], [6.0], [3])[0].trace == "traces/seed=3"


def test_local_processes_give_the_rows_of_a_serial_run() -> None:
    points = sw.grid(TRACE, policies=["fifo", "fairshare"], clusters=["8:8:8"], round_minutes=[6.0, 15.0], seeds=[0, 1])
    serial = sw.run_local(points, workers=1)
    seen: list[int] = []
    parallel = sw.run_local(points, workers=2, on_done=lambda r: seen.append(r["index"]))
    assert sorted(seen) == list(range(8)) and [r["index"] for r in parallel] == list(range(8))
    assert list(sw.comparable(parallel)) == list(sw.comparable(serial))
    by = {(r["policy"], r["round_minutes"], r["seed"]): r["avg_jct_h"] for r in serial}
    # seeds draw different synthetic traces; round length changes the replay
    assert by[("fifo", 6.0, 0)] != by[("fifo", 6.0, 1)] and by[("fifo", 6.0, 0)] != by[("fifo", 15.0, 0)]


def test_sweep_command_writes_one_row_per_grid_point(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    res = runner.invoke(
        app,
        [
            "sweep",
            TRACE,
            "-p",
            "fifo",
            "-p",
            "quota",
            "-c",
            "8:8:8",
            "-c",
            "16:16:16",
            "-r",
            "6",
            "-s",
            "0",
            "-s",
            "1",
            "-j",
            "2",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "8 replays" in res.output and "2 local process" in res.output and "sweep" in res.output
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 8 and {r["policy"] for r in rows} == {"fifo", "quota"}
    assert {r["cluster"] for r in rows} == {"v100=8,p100=8,k80=8", "v100=16,p100=16,k80=16"}
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["run"]["runner"] == "processes" and len(doc["rows"]) == 8
    assert all(r["jobs"] == 24 for r in doc["rows"])
    assert "heat" not in rows[0]  # the heat maps' data is in sweep.json and the report, not a column
    assert all(len(r["heat"]["ratio"]) == len(r["heat"]["teams"]) for r in doc["rows"])
    report = (out / "sweep_report.html").read_text()
    for cluster in ("v100=8,p100=8,k80=8", "v100=16,p100=16,k80=16"):
        assert f"<h2>{cluster}</h2>" in report
        assert (out / f"sweep_heatmap_{cluster.replace('=', '-').replace(',', '-')}.png").stat().st_size > 1000
    assert report.count("data:image/png;base64,") == 2 and "ranking per cluster" in res.output


def test_sweep_without_ray_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sw, "ray_available", lambda: False)
    for flag in (["--ray"], ["--ray-address", "auto"]):
        res = runner.invoke(app, ["sweep", TRACE, "-p", "fifo", "-c", "8:8:8", "-o", str(tmp_path), *flag])
        assert res.exit_code == 2 and "pip install 'fairshare[ray]'" in res.output, res.output


def test_sweep_usage_errors(tmp_path: Path) -> None:
    data = str(Path(__file__).parent / "data")
    res = runner.invoke(app, ["sweep", data, "-c", "8:8:8", "-s", "0", "-s", "1", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "does not depend on the seed" in res.output
    res = runner.invoke(app, ["sweep", data, "-p", "fifo", "-c", "4:4:4", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "needs 8 GPUs" in res.output
    res = runner.invoke(app, ["sweep", TRACE, "-p", "lottery", "-c", "8:8:8", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "unknown policy 'lottery'" in res.output


def test_ray_gives_the_same_rows_as_local_processes(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'fairshare[ray]'): Ray path not tested")
    points = sw.grid(TRACE, policies=["fifo", "fairshare"], clusters=["8:8:8"], round_minutes=[6.0, 15.0], seeds=[0])
    local = sw.run_local(points, workers=1)
    out = tmp_path / "ray"
    res = runner.invoke(
        app,
        [
            "sweep",
            TRACE,
            "-p",
            "fifo",
            "-p",
            "fairshare",
            "-c",
            "8:8:8",
            "-r",
            "6",
            "-r",
            "15",
            "--ray",
            "-j",
            "2",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "local Ray (2 CPUs)" in res.output
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["run"]["runner"] == "ray"
    assert list(sw.comparable(doc["rows"])) == list(sw.comparable(local))
    import ray

    assert not ray.is_initialized()  # the local Ray started for the sweep is stopped


def test_ray_address_joins_a_running_cluster(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'fairshare[ray]'): Ray path not tested")
    import subprocess
    import sys

    # a separate driver starts a one-CPU local cluster and keeps it up until its stdin closes
    head = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import ray, sys; ctx = ray.init(num_cpus=1, include_dashboard=False, "
            "logging_level='warning'); print(ctx.address_info['gcs_address'], flush=True); sys.stdin.read(); "
            "ray.shutdown()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        address = head.stdout.readline().strip()  # type: ignore[union-attr]
        assert address, "the Ray head did not start"
        out = tmp_path / "joined"
        res = runner.invoke(
            app, ["sweep", TRACE, "-p", "fifo", "-p", "kueue", "-c", "8:8:8", "--ray-address", address, "-o", str(out)]
        )
        assert res.exit_code == 0, res.output
        assert f"Ray at {address}" in res.output
        rows = json.loads((out / "sweep.json").read_text())["rows"]
        local = sw.run_local(sw.grid(TRACE, ["fifo", "kueue"], ["8:8:8"], [6.0], [0]), workers=1)
        assert list(sw.comparable(rows)) == list(sw.comparable(local))
        import ray

        assert not ray.is_initialized()  # disconnected; the cluster itself belongs to the head
    finally:
        try:
            head.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.communicate()


def _row(cluster: str, policy: str, seed: int, **metrics: float) -> dict:
    base = dict(
        avg_jct_h=10.0,
        utilisation=0.5,
        min_share_ratio=0.8,
        min_effective_share_ratio=0.8,
        jain=0.9,
        preemptions_per_job_hour=0.0,
        longest_starved_streak=0,
    )
    return {"cluster": cluster, "policy": policy, "seed": seed, **base, **metrics}


def test_policies_are_ranked_per_cluster_by_their_mean_ranks() -> None:
    rows = [
        # on the small cluster, b is better than a on every ranked metric (means over its two seeds)
        _row("small", "a", 0, avg_jct_h=20.0, utilisation=0.4, min_share_ratio=0.5),
        _row("small", "a", 1, avg_jct_h=30.0, utilisation=0.4, min_share_ratio=0.7),
        _row(
            "small",
            "b",
            0,
            avg_jct_h=10.0,
            utilisation=0.6,
            min_share_ratio=0.9,
            jain=0.95,
            min_effective_share_ratio=0.9,
        ),
        _row(
            "small",
            "b",
            1,
            avg_jct_h=12.0,
            utilisation=0.6,
            min_share_ratio=0.9,
            jain=0.95,
            min_effective_share_ratio=0.9,
            preemptions_per_job_hour=-1.0,
        ),
        # on the big one, a wins on JCT only and ties the rest: a is first
        _row("big", "a", 0, avg_jct_h=5.0),
        _row("big", "b", 0, avg_jct_h=6.0),
    ]
    table = sr.standings(rows)
    assert list(table) == ["small", "big"]
    small = table["small"]
    assert [(s.policy, s.place) for s in small] == [("b", 1), ("a", 2)]
    assert small[0].means["avg_jct_h"] == 11.0 and small[1].means["min_share_ratio"] == pytest.approx(0.6)
    assert small[0].ranks == {k: 1.0 for k in sr.RANKED} and small[0].points == 2
    big = table["big"]
    assert [s.policy for s in big] == ["a", "b"] and big[0].ranks["avg_jct_h"] == 1.0
    assert big[0].ranks["jain"] == big[1].ranks["jain"] == 1.5  # a tie shares the places


def test_the_heat_map_is_averaged_per_cell_over_a_clusters_replays() -> None:
    cols = sr.HEATMAP_COLUMNS
    heat0 = {"teams": ["x", "y"], "ratio": [[1.0] + [None] * (cols - 1), [0.5] * cols]}
    heat1 = {"teams": ["x", "z"], "ratio": [[0.0] + [2.0] * (cols - 1), [None] * cols]}
    rows = [
        {"cluster": "c", "policy": "p", sr.HEAT_KEY: heat0},
        {"cluster": "c", "policy": "p", sr.HEAT_KEY: heat1},
        {"cluster": "other", "policy": "p", sr.HEAT_KEY: {"teams": ["x"], "ratio": [[9.0] * cols]}},
    ]
    teams, ratio = sr.mean_heat(rows, "c", "p")
    assert teams == ["x", "y", "z"]
    assert ratio[0, 0] == 0.5 and ratio[0, 1] == 2.0  # x: both replays, then only the one with demand
    assert ratio[1, 3] == 0.5 and bool(ratio.mask[2].all())  # z never had demand: grey
