"""Loaders and the cluster spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairshare.simulate.engine import Cluster, SimulationError, simulate
from fairshare.simulate.policies import make
from fairshare.simulate.trace import TraceError, gavel_job_throughput, load_csv, load_gavel, load_trace, synthetic

DATA = Path(__file__).parent / "data"


def test_gavel_directory_is_one_team_per_file_with_matrix_throughputs() -> None:
    jobs = load_gavel(DATA)
    assert len(jobs) == 22 and {j.team for j in jobs} == {"51b7ef", "925e2b"}
    first = next(j for j in jobs if j.id == "51b7ef-1")
    assert (first.kind, first.gpus, first.work, first.arrival) == ("Transformer (batch size 128)", 1, 246378, 0)
    assert first.throughput["v100"] == pytest.approx(5.44610521981264)
    assert [j.arrival for j in jobs] == sorted(j.arrival for j in jobs)


def test_scale_factors_beyond_the_matrix_scale_the_largest_measured_one() -> None:
    eight = gavel_job_throughput("ResNet-50 (batch size 64)", 8)
    assert gavel_job_throughput("ResNet-50 (batch size 64)", 16)["v100"] == pytest.approx(2 * eight["v100"])


def test_bad_gavel_line_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "vc.trace"
    f.write_text("Transformer (batch size 128)\tcmd\t-step\t1\t100\t0\t1\nNope\tcmd\t-x\t1\t100\t0\t1\n")
    with pytest.raises(TraceError, match=r"vc.trace:2: job type 'Nope'"):
        load_gavel(f)


def test_csv_duration_is_end_minus_start_and_arrivals_start_at_zero(tmp_path: Path) -> None:
    f = tmp_path / "h.csv"
    f.write_text(
        "job_id,user,vc,gpu_num,submit_time,start_time,end_time\n"
        "1,u1,vcA,2,1000,1010,1110\n2,u2,vcB,0,1000,1000,2000\n3,u2,vcB,1,1050,1100,1400\n"
        "4,u3,vcB,1,2020-01-01T00:00:00,2020-01-01T00:00:10,2020-01-01T00:01:10\n"
    )
    jobs = load_csv(f)
    by = {j.id: j for j in jobs}
    assert set(by) == {"1", "3", "4"}  # the CPU job is skipped
    assert (by["1"].team, by["1"].gpus, by["1"].work, by["1"].arrival) == ("vcA", 2, 100, 0)
    assert (by["3"].arrival, by["3"].work, by["4"].work) == (50, 300, 60)
    assert by["1"].rate("anything") == 1.0


def test_csv_missing_columns_are_named(tmp_path: Path) -> None:
    f = tmp_path / "h.csv"
    f.write_text("job_id,vc,gpus\n1,a,1\n")
    with pytest.raises(TraceError, match="missing column"):
        load_csv(f)


HEADER = b"job_id,user,vc,gpu_num,submit_time,start_time,end_time\n"


@pytest.mark.parametrize(
    "row", [b"1,u,a,inf,0,0,10\n", b"1,u,a,2,0,0,nan\n", b"1,u,a,2,nan,0,10\n", b"1,u,a,1e400,0,0,10\n"]
)
def test_csv_numbers_must_be_finite(tmp_path: Path, row: bytes) -> None:
    """nan and inf parse as floats, and would stall or crash the replay much later."""
    f = tmp_path / "h.csv"
    f.write_bytes(HEADER + row)
    with pytest.raises(TraceError, match=r"h.csv:2: gpu_num and times must be finite numbers"):
        load_csv(f)


def test_gavel_numbers_must_be_finite(tmp_path: Path) -> None:
    f = tmp_path / "vc.trace"
    f.write_text("Transformer (batch size 128)\tcmd\t-step\t1\tinf\t0\t1\n")
    with pytest.raises(TraceError, match=r"vc.trace:1: total_steps, arrival_time and scale_factor must be finite"):
        load_gavel(f)


def test_csv_from_a_spreadsheet_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    f = tmp_path / "h.csv"
    f.write_bytes(b"\xef\xbb\xbf" + HEADER + b"1,u,a,2,0,0,100\n")
    assert [(j.id, j.gpus, j.work) for j in load_csv(f)] == [("1", 2, 100)]


def test_csv_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    f = tmp_path / "h.csv"
    f.write_bytes(HEADER + b"1,u,\xe9quipe,2,0,0,100\n")
    with pytest.raises(TraceError, match=r"h.csv: not UTF-8 text \(a byte 0xe9\)"):
        load_csv(f)


@pytest.mark.parametrize("spec", ["synthetic:5:2:nan", "synthetic:5:2:inf", "synthetic:5:2:3:9"])
def test_synthetic_specs_are_strict(spec: str) -> None:
    with pytest.raises(TraceError, match="write synthetic:JOBS"):
        load_trace(spec)


def test_synthetic_follows_the_seed() -> None:
    a, b, c = synthetic(50, teams=3, seed=7), synthetic(50, teams=3, seed=7), synthetic(50, teams=3, seed=8)
    assert a == b and a != c
    assert {j.gpus for j in synthetic(400, seed=1)} <= {1, 2, 4, 8}
    assert load_trace("synthetic:20:2:10", seed=3) == synthetic(20, 2, 10.0, seed=3)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("300:300:300", {"v100": 300, "p100": 300, "k80": 300}),
        ("V100=4, k80=2", {"v100": 4, "k80": 2}),
        ("a100:8", {"a100": 8}),
    ],
)
def test_cluster_specs(spec: str, expected: dict) -> None:
    assert dict(Cluster.parse(spec).gpus) == expected


@pytest.mark.parametrize("spec", ["_x=4", "-a=2", ".b=1"])
def test_a_gpu_type_must_start_with_a_letter_or_digit(spec: str) -> None:
    """The type becomes a pool name in fairshare's scenario, which must start with one."""
    with pytest.raises(SimulationError, match="write TYPE=COUNT"):
        Cluster.parse(spec)


def test_a_job_that_fits_nowhere_is_refused_up_front() -> None:
    with pytest.raises(SimulationError, match="needs 8 GPUs"):
        simulate(load_gavel(DATA), Cluster.parse("4:4:4"), make("fifo"))


def test_gavel_subset_keeps_what_gavels_simulator_replays() -> None:
    from fairshare.simulate.trace import Job, gavel_subset

    def j(kind: str, gpus: int) -> Job:
        return Job(id=f"{kind}-{gpus}", team="t", arrival=0, gpus=gpus, work=1, kind=f"{kind} (batch size 8)")

    jobs = [j("ResNet-18", g) for g in (1, 2, 4, 8, 16)] + [
        j(k, g) for k in ("A3C", "CycleGAN", "Recommendation") for g in (1, 2)
    ]
    kept = [x.id for x in gavel_subset(jobs)]
    assert kept == [
        "ResNet-18-1",
        "ResNet-18-2",
        "ResNet-18-4",
        "ResNet-18-8",
        "A3C-1",
        "CycleGAN-1",
        "Recommendation-1",
    ]
