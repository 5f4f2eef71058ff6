"""Jobs to replay: the Job record and loaders for public trace formats.

A job is a gang: it runs on exactly `gpus` GPUs, all of one type, or not at all.  Its work is
in its own steps; `throughput[type]` is how many steps per second the whole gang makes on that
type (Gavel's measured matrix).  A job with an empty `throughput` runs at one step per second
on every type: CSV histories give a duration in seconds on the reference type and nothing more.

Formats:
- Gavel's Philly-derived TSV (`*.trace`, 7 columns, no header); a directory of them is one
  trace with one team per file (each Philly virtual cluster is a team).
- Helios/Acme-style CSV with `job_id,user,vc,gpu_num,submit_time,start_time,end_time`
  (times in seconds or ISO dates; duration = end - start on the reference type).
- A synthetic generator following Gavel's published Philly distributions.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from fairshare.errors import UserError

GAVEL_TYPES = ("v100", "p100", "k80")  # order of Gavel's cluster specs "#v100:#p100:#k80"


class TraceError(UserError, ValueError):
    """A trace file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Job:
    id: str
    team: str
    arrival: float  # seconds from the start of the trace
    gpus: int  # gang size: all of them, of one type, or none
    work: float  # steps (or reference-GPU seconds for CSV histories)
    throughput: Mapping[str, float] = field(default_factory=dict)  # type -> steps/s of the gang
    kind: str = ""  # model name, for reports

    def rate(self, gpu_type: str) -> float:
        """Steps per second on `gpu_type`; 0 if the job cannot run there."""
        if not self.throughput:
            return 1.0
        return self.throughput.get(gpu_type, 0.0)

    def best_rate(self, types: Iterable[str]) -> float:
        return max((self.rate(t) for t in types), default=0.0)


def sort_jobs(jobs: Iterable[Job]) -> list[Job]:
    """Arrival order, ties by team then id: the order every policy breaks ties in."""
    return sorted(jobs, key=lambda j: (j.arrival, j.team, j.id))


# --- Gavel ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def gavel_throughputs() -> dict[str, dict[int, dict[str, float]]]:
    """model -> scale factor -> GPU type -> isolated steps/s (bundled from Gavel, MIT)."""
    text = resources.files("fairshare.simulate").joinpath("data/gavel_throughputs.json").read_text()
    raw = json.loads(text)["throughputs"]
    return {m: {int(sf): dict(v) for sf, v in by_sf.items()} for m, by_sf in raw.items()}


def gavel_job_throughput(model: str, scale_factor: int) -> dict[str, float]:
    """The gang's steps/s per type.  Scale factors outside the matrix (16, 32, ...) scale the
    largest measured one below them linearly (an optimistic, documented extrapolation)."""
    table = gavel_throughputs()
    if model not in table:
        raise KeyError(model)
    by_sf = table[model]
    if scale_factor in by_sf:
        return dict(by_sf[scale_factor])
    base = max((sf for sf in by_sf if sf <= scale_factor), default=min(by_sf))
    return {t: v * scale_factor / base for t, v in by_sf[base].items()}


def load_gavel(path: Path, team: str | None = None) -> list[Job]:
    """One Gavel `.trace` file (7 columns: job_type, command, num_steps_arg, needs_data_dir,
    total_steps, arrival_time_s, scale_factor), or a directory of them (team = file stem)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.trace"))
        if not files:
            raise TraceError(f"{path}: no *.trace files in this directory")
        return sort_jobs(j for f in files for j in load_gavel(f))
    team = team or path.stem
    jobs = []
    with _opened(path) as fh:
        for n, line in enumerate(_lines(fh, path), 1):
            if not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) == 10:  # physical-cluster traces: arrival is the last column
                cols = [cols[0], cols[1], cols[3], cols[4], cols[5], cols[9], cols[6]]
            if len(cols) != 7:
                raise TraceError(f"{path}:{n}: expected 7 tab-separated columns (Gavel trace), got {len(cols)}")
            model = cols[0]
            try:
                steps, arrival, sf = _finite(cols[4]), _finite(cols[5]), int(cols[6])
            except ValueError:
                raise TraceError(
                    f"{path}:{n}: total_steps, arrival_time and scale_factor must be finite numbers"
                ) from None
            try:
                tput = gavel_job_throughput(model, sf)
            except KeyError:
                raise TraceError(f"{path}:{n}: job type {model!r} is not in Gavel's throughput matrix") from None
            if steps <= 0 or sf <= 0 or arrival < 0:
                raise TraceError(f"{path}:{n}: steps and scale factor must be positive, arrival non-negative")
            jobs.append(
                Job(id=f"{team}-{n}", team=team, arrival=arrival, gpus=sf, work=steps, throughput=tput, kind=model)
            )
    return sort_jobs(jobs)


GAVEL_SCALE_FACTORS = (1, 2, 4, 8)  # the gang sizes Gavel's simulator replays
GAVEL_SINGLE_GPU_ONLY = ("A3C", "CycleGAN", "Recommendation")  # families Gavel replays at scale factor 1 only


def gavel_subset(jobs: Iterable[Job]) -> list[Job]:
    """The jobs Gavel's own simulator can replay: gangs of 1, 2, 4 or 8 GPUs, and A3C, CycleGAN and
    Recommendation on one GPU only (its throughput matrix has no other entries for them).  On the
    Philly-derived trace: 13,716 of 15,264 jobs, the set its published results are on."""
    return [
        j
        for j in jobs
        if j.gpus in GAVEL_SCALE_FACTORS and (j.gpus == 1 or j.kind.split(" (")[0] not in GAVEL_SINGLE_GPU_ONLY)
    ]


# --- Helios / Acme CSV ---------------------------------------------------------------------

CSV_COLUMNS = ("job_id", "gpu_num", "submit_time", "start_time", "end_time")


def _finite(value: str) -> float:
    """A number as a trace writes it; nan and inf are refused (ValueError) like any typo."""
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{value!r} is not a finite number")
    return x


def _time(value: str) -> float:
    try:
        return _finite(value)
    except ValueError:
        return dt.datetime.fromisoformat(value.strip()).timestamp()


def _opened(path: Path) -> Any:
    """A trace opened as UTF-8 text, a byte-order mark ignored (spreadsheets write one)."""
    return path.open(encoding="utf-8-sig", newline="")


def _lines(fh: Any, path: Path) -> Iterator[str]:
    """The file's lines; bytes that are not UTF-8 are a TraceError (the file is decoded in
    blocks, so the line is not known)."""
    try:
        yield from fh
    except UnicodeDecodeError as e:
        raise TraceError(f"{path}: not UTF-8 text (a byte 0x{e.object[e.start]:02x}); save the file as UTF-8") from None


def load_csv(path: Path, team_column: str = "vc") -> list[Job]:
    """Helios/Acme-style CSV.  Rows with no GPU or no positive duration are skipped (CPU jobs,
    jobs that never ran); arrival is relative to the earliest kept submit time."""
    path = Path(path)
    with _opened(path) as fh:
        reader = csv.DictReader(_lines(fh, path))
        fields = set(reader.fieldnames or [])
        missing = [c for c in (*CSV_COLUMNS, team_column) if c not in fields]
        if missing:
            raise TraceError(
                f"{path}: missing column(s) {', '.join(missing)}; expected "
                f"job_id,user,vc,gpu_num,submit_time,start_time,end_time"
            )
        rows = []
        for n, row in enumerate(reader, 2):
            try:
                gpus = int(_finite(row["gpu_num"] or "0"))
                if gpus <= 0:
                    continue
                submit, start, end = (_time(row[c]) for c in ("submit_time", "start_time", "end_time"))
            except (ValueError, TypeError, OverflowError):
                raise TraceError(f"{path}:{n}: gpu_num and times must be finite numbers or ISO dates") from None
            if end - start <= 0:
                continue
            rows.append((submit, row[team_column] or "unknown", row["job_id"], gpus, end - start))
    if not rows:
        raise TraceError(f"{path}: no GPU job with a positive duration")
    t0 = min(r[0] for r in rows)
    return sort_jobs(
        Job(id=str(jid), team=str(team), arrival=submit - t0, gpus=gpus, work=dur)
        for submit, team, jid, gpus, dur in rows
    )


# --- synthetic -------------------------------------------------------------------------------


def synthetic(
    n_jobs: int, teams: int = 3, jobs_per_hour: float = 4.0, seed: int = 0, reference: str = "v100"
) -> list[Job]:
    """Jobs drawn from Gavel's published Philly distributions (scheduler/utils.py):
    model uniform over the matrix; scale factor 1/2/4/8 with probability .7/.1/.15/.05;
    duration 10^U(1.5,3) minutes (80%) or 10^U(3,4) minutes (20%) on the reference type;
    Poisson arrivals at `jobs_per_hour`; teams uniform.  Same seed, same jobs."""
    if n_jobs < 0 or teams < 1 or jobs_per_hour <= 0:
        raise ValueError("need n_jobs >= 0, teams >= 1 and jobs_per_hour > 0")
    rng = np.random.default_rng(seed)
    table = gavel_throughputs()
    models = sorted(table)
    jobs, now = [], 0.0
    for i in range(n_jobs):
        now += float(rng.exponential(3600.0 / jobs_per_hour)) if i else 0.0
        r = rng.uniform()
        sf = 1 if r < 0.7 else 2 if r < 0.8 else 4 if r < 0.95 else 8
        model = models[int(rng.integers(len(models)))]
        while sf not in table[model]:  # a model never measured at this size: pick another
            model = models[int(rng.integers(len(models)))]
        minutes = 10 ** (rng.uniform(3, 4) if rng.uniform() >= 0.8 else rng.uniform(1.5, 3))
        tput = gavel_job_throughput(model, sf)
        team = f"team{int(rng.integers(teams))}"
        jobs.append(
            Job(
                id=f"s{i}",
                team=team,
                arrival=round(now, 3),
                gpus=sf,
                work=math.ceil(60 * minutes * tput[reference]),
                throughput=tput,
                kind=model,
            )
        )
    return sort_jobs(jobs)


def load_trace(spec: str, team_column: str = "vc", seed: int = 0) -> list[Job]:
    """A path (.trace file or directory: Gavel; .csv: Helios/Acme) or `synthetic:N[:TEAMS[:RATE]]`."""
    if spec.startswith("synthetic:"):
        parts = spec.split(":")[1:]
        try:
            if len(parts) > 3:
                raise ValueError("too many fields")
            n = int(parts[0])
            teams = int(parts[1]) if len(parts) > 1 else 3
            rate = _finite(parts[2]) if len(parts) > 2 else 4.0
            return synthetic(n, teams, rate, seed=seed)
        except (ValueError, IndexError):
            raise TraceError(
                f"{spec!r}: write synthetic:JOBS[:TEAMS[:JOBS_PER_HOUR]], e.g. synthetic:200:4:6"
            ) from None
    path = Path(spec)
    if not path.exists():
        raise TraceError(f"{spec}: no such file or directory")
    if path.is_file() and path.suffix.lower() == ".csv":
        return load_csv(path, team_column)
    return load_gavel(path)
