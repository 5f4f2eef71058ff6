"""How fast fairshare allocates a large synthetic lab, and how much memory it takes.

For each size n: synthetic_scenario(n, seed=0) (a 4-level org, 8 GPU types x 3 sites), then
  * allocate(scenario): wall time (median of --repeat runs; the scenario is built beforehand
    and not timed), the growth of the process's peak RSS (getrusage maxrss) over the first
    run, and, in a separate run under tracemalloc, the peak of memory allocated through
    Python's allocators (numpy included; HiGHS's own C++ memory is not seen by tracemalloc,
    only by maxrss);
  * in one more run, the process CPU of allocate() and the part of it inside HiGHS's run()
    (summed over threads).  HiGHS releases the GIL while it solves; the rest ("other CPU": Python
    and numpy) runs one thread at a time, so it is a floor under the wall time on any number of
    cores, and (CPU s) / cores is another;
  * the whole CLI, `fairshare allocate FILE --json > /dev/null`, as a subprocess (start-up,
    parsing, validation, allocation, JSON output; median of --repeat runs), with FILE the
    scenario dumped to YAML and to JSON.
Each size runs in a fresh worker process so maxrss is not inherited from a larger size.
Target: allocate() under 2 s at 10,000 requests.

The large-lab family of issue 16 (`--family minimums`): synthetic_scenario(n, branching=(4, 5, 9),
minimums=0.1, extras=True), 180 teams under a 4-level tree, 8 types x 3 sites, a tenth of the
large requests all-or-nothing, some priorities and limits.  Each size is also allocated without
the minimums (the same lab otherwise), in the same worker, and the ratio printed.  Targets: 100,000
requests under 10 s and 2 GB, time(100k) / time(10k) at most 12, minimums at most 2x the lab
without them.  LP solves count every minimum-size round's LPs.

    .venv/bin/python bench/bench_scale.py [--sizes 1000,2000,5000,10000] [--repeat 3] [--family minimums]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import engine_fingerprint, machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DEFAULT_SIZES = (1000, 2000, 5000, 10000)
TARGET_N, TARGET_SECONDS = 10_000, 2.0
LARGE_N, LARGE_SECONDS, LARGE_GROWTH, LARGE_MB, MIN_COST = 100_000, 10.0, 12.0, 2048, 2.0
FAMILIES = ("synthetic", "minimums")


def lab(n: int, seed: int, family: str, with_minimums: bool = True) -> object:
    """The scenario of `family` at size n (see the module's docstring)."""
    from fairshare.scenario.synthetic import synthetic_scenario

    if family == "minimums":
        return synthetic_scenario(
            n, seed=seed, branching=(4, 5, 9), minimums=0.1 if with_minimums else 0.0, extras=True
        )
    return synthetic_scenario(n, seed=seed)


def worker(n: int, repeat: int, seed: int, family: str = "synthetic") -> dict:
    from fairshare.engine import allocate
    from fairshare.engine._problem import compile_scenario

    start = time.perf_counter()
    scenario = lab(n, seed, family)
    build = time.perf_counter() - start
    cells = compile_scenario(scenario).n_cells

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    alloc = None
    for _ in range(repeat):
        start = time.perf_counter()
        alloc = allocate(scenario)
        times.append(time.perf_counter() - start)
        if len(times) == 1:
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    tracemalloc.start()
    tracemalloc.reset_peak()
    allocate(scenario)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    cpu, highs_seconds = cpu_split(allocate, scenario)

    assert alloc is not None
    without: dict = {}
    if family == "minimums":  # the same lab without its minimums, timed the same way
        plain = lab(n, seed, family, with_minimums=False)
        plain_times = []
        for _ in range(repeat):
            start = time.perf_counter()
            allocate(plain)
            plain_times.append(time.perf_counter() - start)
        without = {
            "minimums": sum(1 for r in scenario.requests if r.min),
            "below_min": len(alloc.fairness.below_min),
            "seconds_without_minimums": statistics.median(plain_times),
            "minimum_cost": statistics.median(times) / statistics.median(plain_times),
        }
    return {
        **without,
        "family": family,
        "n": n,
        "seed": seed,
        "requests": len(scenario.requests),
        "pools": len(scenario.pools),
        "nodes": len(scenario.nodes()),
        "cells": cells,
        "build_seconds": build,
        "seconds": statistics.median(times),
        "seconds_all": times,
        "engine_solve_seconds": alloc.stats.solve_seconds,
        "peak_mb": peak / 2**20,
        "maxrss_delta_mb": (rss_after - rss_before) / 1024,
        "maxrss_mb": rss_after / 1024,
        "lp_solves": alloc.stats.lp_solves,
        "levels": alloc.stats.levels,
        "groups": alloc.stats.groups,
        "min_rounds": alloc.stats.min_rounds,
        "cpu_seconds": cpu,
        "highs_seconds": highs_seconds,
        "python_seconds": cpu - highs_seconds,
    }


def cpu_split(allocate: Callable, scenario: object) -> tuple[float, float]:
    """One more allocate(): the process CPU it takes, and how much of it is inside HiGHS's
    run() (summed over the engine's threads).  HiGHS releases the GIL while it solves and
    nothing else does, so the rest (Python and numpy) runs one thread at a time: it bounds the
    wall time from below whatever the number of cores."""
    import highspy

    spans: list[float] = []
    real_run = highspy.Highs.run

    def timed_run(h: highspy.Highs) -> object:
        begin = time.thread_time()  # this thread's CPU: waiting for the GIL afterwards is not counted
        try:
            return real_run(h)
        finally:
            spans.append(time.thread_time() - begin)  # list.append is atomic under the GIL

    highspy.Highs.run = timed_run
    try:
        begin = time.process_time()
        allocate(scenario)
        cpu = time.process_time() - begin
    finally:
        highspy.Highs.run = real_run
    return cpu, sum(spans)


CLI_FORMATS = ("yaml", "json")


def time_cli(n: int, seed: int, repeat: int, family: str = "synthetic") -> dict[str, tuple[float | None, str]]:
    """Per file format: the median wall time of `fairshare allocate FILE --json > /dev/null`
    over `repeat` runs, or why it could not run.  A JSON file takes the C JSON parser; YAML
    goes through libyaml and PyYAML's Python constructor."""
    from fairshare.scenario.files import dump_scenario

    exe = ROOT / ".venv" / "bin" / "fairshare"
    if not exe.exists():
        return {fmt: (None, "CLI not available") for fmt in CLI_FORMATS}
    scenario = lab(n, seed, family)
    texts = {"yaml": dump_scenario(scenario), "json": scenario.model_dump_json(exclude_defaults=True)}
    out = {}
    for fmt in CLI_FORMATS:
        path = OUT / f"{family}-{n}.{fmt}"
        path.write_text(texts[fmt], encoding="utf-8")
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            proc = subprocess.run(
                [str(exe), "allocate", str(path), "--json"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            times.append(time.perf_counter() - start)
            if proc.returncode != 0:
                break
        if proc.returncode != 0:
            err = proc.stderr.strip().splitlines()
            if any("No module named 'fairshare.cli'" in line or "No such command" in line for line in err):
                out[fmt] = (None, "CLI not available")
            else:
                out[fmt] = (None, f"CLI failed (exit {proc.returncode}: {err[-1][:60] if err else ''})")
        else:
            out[fmt] = (statistics.median(times), "ok")
    return out


def cli_cell(row: dict, fmt: str) -> str:
    seconds = row.get(f"cli_{fmt}_seconds")
    return f"{seconds:.2f}" if seconds is not None else row.get(f"cli_{fmt}_status", "-")


def status(row: dict) -> str:
    if "error" in row:
        return "ERROR"
    if row["n"] != TARGET_N:
        return "-"
    return "PASS" if row["seconds"] < TARGET_SECONDS else "MISS"


HEADERS = [
    "n",
    "cells",
    "seconds",
    "CPU s",
    "in HiGHS s",
    "other CPU s",
    "peak MB (tracemalloc)",
    "maxrss +MB",
    "LP solves",
    "groups",
    "min rounds",
    "without minimums s",
    "CLI s (YAML)",
    "CLI s (JSON)",
    "target",
    "PASS/MISS",
]


def cells(row: dict) -> list[str]:
    cli = [cli_cell(row, fmt) for fmt in CLI_FORMATS]
    if "error" in row:
        return [
            f"{row['n']:,}",
            "-",
            row["error"][:50],
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            *cli,
            f"< {TARGET_SECONDS:g} s" if row["n"] == TARGET_N else "-",
            "ERROR",
        ]
    plain = row.get("seconds_without_minimums")
    return [
        f"{row['n']:,}",
        f"{row['cells']:,}",
        f"{row['seconds']:.2f}",
        f"{row['cpu_seconds']:.2f}",
        f"{row['highs_seconds']:.2f}",
        f"{row['python_seconds']:.2f}",
        f"{row['peak_mb']:.1f}",
        f"{row['maxrss_delta_mb']:.1f}",
        str(row["lp_solves"]),
        str(row["groups"]),
        str(row["min_rounds"]),
        "-" if plain is None else f"{plain:.2f} ({row['minimum_cost']:.1f}x)",
        *cli,
        f"< {TARGET_SECONDS:g} s" if row["n"] == TARGET_N else "-",
        status(row),
    ]


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def print_table(rows: list[dict]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print(markdown(rows))
        return
    table = Table(title="fairshare allocate() on synthetic labs (synthetic_scenario(n, seed=0))")
    for h in HEADERS:
        table.add_column(h, justify="right")
    for r in rows:
        c = cells(r)
        c[-1] = {"PASS": "[green]PASS[/]", "MISS": "[bold red]MISS[/]", "ERROR": "[bold red]ERROR[/]"}.get(c[-1], c[-1])
        table.add_row(*c)
    Console(width=200).print(table)


def stem(family: str, ext: str) -> str:
    return f"scale.{ext}" if family == "synthetic" else f"scale-{family}.{ext}"


def large_targets(rows: list[dict]) -> None:
    """The issue-16 targets, for the sizes that were run."""
    by_n = {r["n"]: r for r in rows if "error" not in r}
    big, small = by_n.get(LARGE_N), by_n.get(TARGET_N)
    if big is not None:
        ok = big["seconds"] < LARGE_SECONDS and big["maxrss_mb"] < LARGE_MB
        print(
            f"target: {LARGE_N:,} requests < {LARGE_SECONDS:g} s and {LARGE_MB} MB: {'PASS' if ok else 'MISS'} "
            f"({big['seconds']:.2f} s, maxrss {big['maxrss_mb']:.0f} MB)"
        )
        if small is not None:
            growth = big["seconds"] / small["seconds"]
            verdict = "PASS" if growth <= LARGE_GROWTH else "MISS"
            print(f"target: time({LARGE_N:,}) / time({TARGET_N:,}) <= {LARGE_GROWTH:g}: {verdict} ({growth:.1f})")
    for r in rows:
        if "minimum_cost" in r:
            verdict = "PASS" if r["minimum_cost"] <= MIN_COST else "MISS"
            print(
                f"target: minimums <= {MIN_COST:g}x the same lab without them at {r['n']:,}: {verdict} "
                f"({r['seconds']:.2f} s vs {r['seconds_without_minimums']:.2f} s, {r['min_rounds']} rounds, "
                f"{r['below_min']} of {r['minimums']} minimums not funded)"
            )


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated request counts")
    ap.add_argument("--repeat", type=int, default=3, help="timed allocate() runs per size (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cli", action="store_true", help="skip timing the CLI")
    ap.add_argument("--out", default=str(OUT), help="directory for scale.json / scale.md / the YAML files")
    ap.add_argument("--family", default="synthetic", choices=FAMILIES, help="the lab (see above)")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        fingerprint = engine_fingerprint()
        try:
            row = worker(args.worker, args.repeat, args.seed, args.family)
        except Exception as e:  # an engine crash is a result too
            row = {"n": args.worker, "seed": args.seed, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps({**row, **fingerprint}))
        return

    OUT = Path(args.out).resolve()
    OUT.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    meta = {
        **machine(),
        **engine_fingerprint(),
        "repeat": args.repeat,
        "seed": args.seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(
        f"{meta['cpus']} CPUs ({meta['cpu_model']}), python {meta['python']}; engine sha256 "
        f"{meta['engine_sha256']} (newest file {meta['engine_newest_mtime']})",
        flush=True,
    )
    rows = []
    for n in sizes:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                str(n),
                "--repeat",
                str(args.repeat),
                "--seed",
                str(args.seed),
                "--family",
                args.family,
            ],
            capture_output=True,
            text=True,
        )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            err = proc.stderr.strip().splitlines()
            row = {
                "n": n,
                "seed": args.seed,
                "error": f"worker died (exit {proc.returncode}): {err[-1] if err else ''}",
            }
        else:
            row = json.loads(lines[-1])
        timed = (
            {fmt: (None, "skipped") for fmt in CLI_FORMATS}
            if args.no_cli
            else time_cli(n, args.seed, args.repeat, args.family)
        )
        for fmt, (seconds, why) in timed.items():
            row[f"cli_{fmt}_seconds"], row[f"cli_{fmt}_status"] = seconds, why
        rows.append(row)
        cli = " / ".join(f"{fmt.upper()} {cli_cell(row, fmt)} s" for fmt in CLI_FORMATS)
        if "error" in row:
            print(f"  n={n}: allocate ERROR {row['error']}; CLI {cli}", flush=True)
        else:
            print(
                f"  n={n}: allocate {row['seconds']:.2f} s "
                f"(runs: {', '.join(f'{t:.2f}' for t in row['seconds_all'])}), "
                f"peak {row['peak_mb']:.0f} MB, maxrss +{row['maxrss_delta_mb']:.0f} MB, CLI {cli}",
                flush=True,
            )
        (OUT / stem(args.family, "json")).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))

    print_table(rows)
    (OUT / stem(args.family, "md")).write_text(markdown(rows) + "\n")
    print(
        "seconds = median wall time of allocate(scenario) (scenario construction not timed); "
        "CLI s = median of `fairshare allocate FILE --json > /dev/null` over the same number of runs, start-up "
        "included, with FILE the same lab as YAML and as JSON"
    )
    print(
        "CPU s = process CPU of one more allocate(); in HiGHS s = the part inside HiGHS's run() over all "
        "threads; other CPU s = the rest, which holds the GIL: a floor under the wall time on any number of cores"
    )
    for r in rows:
        if r["n"] == TARGET_N:
            detail = r["error"] if "error" in r else f"{r['seconds']:.2f} s"
            print(f"target: allocate() < {TARGET_SECONDS:g} s at {TARGET_N:,} requests: {status(r)} ({detail})")
    large_targets(rows)
    print(f"{os.cpu_count()} CPUs; rows written to {OUT / stem(args.family, 'json')}")


if __name__ == "__main__":
    main()
