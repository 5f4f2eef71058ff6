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

    .venv/bin/python bench/bench_scale.py [--sizes 1000,2000,5000,10000] [--repeat 3]
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


def worker(n: int, repeat: int, seed: int) -> dict:
    from fairshare.engine import allocate
    from fairshare.engine._problem import compile_scenario
    from fairshare.scenario.synthetic import synthetic_scenario

    start = time.perf_counter()
    scenario = synthetic_scenario(n, seed=seed)
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
    return {
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


def time_cli(n: int, seed: int, repeat: int) -> dict[str, tuple[float | None, str]]:
    """Per file format: the median wall time of `fairshare allocate FILE --json > /dev/null`
    over `repeat` runs, or why it could not run.  A JSON file takes the C JSON parser; YAML
    goes through libyaml and PyYAML's Python constructor."""
    from fairshare.scenario.files import dump_scenario
    from fairshare.scenario.synthetic import synthetic_scenario

    exe = ROOT / ".venv" / "bin" / "fairshare"
    if not exe.exists():
        return {fmt: (None, "CLI not available") for fmt in CLI_FORMATS}
    scenario = synthetic_scenario(n, seed=seed)
    texts = {"yaml": dump_scenario(scenario), "json": scenario.model_dump_json(exclude_defaults=True)}
    out = {}
    for fmt in CLI_FORMATS:
        path = OUT / f"synthetic-{n}.{fmt}"
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
            *cli,
            f"< {TARGET_SECONDS:g} s" if row["n"] == TARGET_N else "-",
            "ERROR",
        ]
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


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated request counts")
    ap.add_argument("--repeat", type=int, default=3, help="timed allocate() runs per size (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cli", action="store_true", help="skip timing the CLI")
    ap.add_argument("--out", default=str(OUT), help="directory for scale.json / scale.md / the YAML files")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        fingerprint = engine_fingerprint()
        try:
            row = worker(args.worker, args.repeat, args.seed)
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
            [sys.executable, __file__, "--worker", str(n), "--repeat", str(args.repeat), "--seed", str(args.seed)],
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
        timed = {fmt: (None, "skipped") for fmt in CLI_FORMATS} if args.no_cli else time_cli(n, args.seed, args.repeat)
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
        (OUT / "scale.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))

    print_table(rows)
    (OUT / "scale.md").write_text(markdown(rows) + "\n")
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
    print(f"{os.cpu_count()} CPUs; rows written to {OUT / 'scale.json'}")


if __name__ == "__main__":
    main()
