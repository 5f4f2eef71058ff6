"""fairshare against a reference implementation of Gavel's max-min fairness LP (cvxpy).

For each size: a random Gavel-style instance (bench/gavel_reference.py), solved
  * by the reference: cvxpy's problem.solve(), wall time including canonicalisation;
  * by fairshare: allocate(scenario), the complete allocation (every lexicographic level,
    the polish, rounding to whole GPUs, reasons), and allocate(scenario, fractional=True)
    for the exact min E/w.
On a flat instance fairshare's min_r E(r)/w(r) must equal Gavel's optimum; a relative
difference above 1e-6 is a FAIL, and the instance is saved to bench/out/mismatch-*.json.

    .venv/bin/python bench/bench_gavel.py [--sizes 1024,2048] [--families gavel,wide] [--skip-reference-above N]

Families (bench/gavel_families.py): gavel, wide, capped, eight_types, weights, ties, two_sites; the worst
fairshare / reference ratio per size is printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import engine_fingerprint, machine  # noqa: E402
from fairshare.engine import allocate  # noqa: E402
from gavel_families import FAMILIES  # noqa: E402
from gavel_reference import (  # noqa: E402
    Instance,
    gavel_objective_of,
    preferred_solver,
    random_instance,
    solve_reference,
    to_scenario,
)

FINGERPRINT = engine_fingerprint()  # taken when the engine is imported: the code measured

OUT = Path(__file__).resolve().parent / "out"
DEFAULT_SIZES = (1024, 2048, 4096, 8192, 16384, 32768)
TOLERANCE = 1e-6


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def engine_diagnostics(sol) -> dict:
    """What the engine computed before publishing: the unrounded x, and the values it froze."""
    pr = sol.problem
    x = sol.fill.x
    e = np.bincount(pr.cell_req, weights=x * pr.cell_speed, minlength=pr.n_requests)
    # flat instance: every request is a unit of the root group; freeze.value is the effective
    # throughput the water-filling fixed for it (its fair value) before the polish LP
    frozen = min(o.freeze.value / o.weight for o in sol.fill.outcomes.values())
    return {"unrounded_min_e_over_w": float((e / pr.req_weight).min()), "freeze_min_e_over_w": float(frozen)}


def allocate_fractional_keeping_solution(scenario):
    """allocate(scenario, fractional=True), also returning the ExactSolution it computed
    (allocate looks solve_exact up in its own module, fairshare.engine._allocate, so it is wrapped
    there for the call) -- saves a third full solve for the diagnostics."""
    import fairshare.engine._allocate as engine

    kept = []
    original = engine.solve_exact

    def keeping(s):
        sol = original(s)
        kept.append(sol)
        return sol

    engine.solve_exact = keeping
    try:
        alloc = allocate(scenario, fractional=True)
    finally:
        engine.solve_exact = original
    return alloc, (kept[-1] if kept else original(scenario))


def run_size(n: int, seed: int, solver: str, skip_reference: bool, family: str = "gavel") -> dict:
    inst = FAMILIES[family](n, seed)
    row: dict = {"family": family, "jobs": n, "seed": seed, "gpus": int(inst.workers.sum()), "solver": solver}

    if skip_reference:
        row.update(
            reference_objective=None, reference_seconds=None, reference_solver_seconds=None, reference_status="skipped"
        )
    else:
        ref = solve_reference(inst, solver)
        row.update(
            reference_objective=ref.objective,
            reference_seconds=ref.wall_seconds,
            reference_solver_seconds=ref.solver_seconds,
            reference_setup_seconds=ref.setup_seconds,
            reference_status=ref.status,
        )

    start = time.perf_counter()
    scenario = to_scenario(inst)
    row["scenario_build_seconds"] = time.perf_counter() - start

    try:
        _fairshare(row, inst, scenario, seed, solver)
    except Exception as e:  # an engine crash is a result too
        row.update(
            status="ERROR",
            error=f"{type(e).__name__}: {e}",
            fairshare_seconds=None,
            fairshare_min_e_over_w=None,
            relative_difference=None,
            unrounded_relative_difference=None,
            freeze_relative_difference=None,
            ratio=None,
            lp_solves=None,
            levels=None,
        )
    return row


def _fairshare(row: dict, inst: Instance, scenario, seed: int, solver: str) -> None:
    n = inst.n_jobs
    start = time.perf_counter()
    alloc = allocate(scenario)
    row["fairshare_seconds"] = time.perf_counter() - start
    row.update(
        fairshare_solve_seconds=alloc.stats.solve_seconds,
        lp_solves=alloc.stats.lp_solves,
        levels=alloc.stats.levels,
        groups=alloc.stats.groups,
    )
    used = {p.name: p.allocated for p in alloc.pools}
    row["rounded_feasible"] = all(used[p.name] <= p.capacity for p in alloc.pools) and all(
        r.total <= r.demand for r in alloc.requests
    )
    row["rounded_gpus_allocated"] = sum(used.values())

    start = time.perf_counter()
    frac, sol = allocate_fractional_keeping_solution(scenario)
    row["fairshare_fractional_seconds"] = time.perf_counter() - start
    published = min(r.effective / r.weight for r in frac.requests)
    row["fairshare_min_e_over_w"] = published
    obj, time_violation, cap_violation = gavel_objective_of(inst, [r.gpus for r in frac.requests])
    row.update(fractional_time_violation=time_violation, fractional_capacity_violation=cap_violation)
    row.update(engine_diagnostics(sol))

    ref_obj = row["reference_objective"]
    if ref_obj is None:
        row.update(
            relative_difference=None,
            freeze_relative_difference=None,
            unrounded_relative_difference=None,
            ratio=None,
            status="no reference",
        )
    else:
        row["relative_difference"] = rel(published, ref_obj)
        row["unrounded_relative_difference"] = rel(row["unrounded_min_e_over_w"], ref_obj)
        row["freeze_relative_difference"] = rel(row["freeze_min_e_over_w"], ref_obj)
        row["ratio"] = row["fairshare_seconds"] / row["reference_seconds"]
        row["status"] = "FAIL" if row["relative_difference"] > TOLERANCE else "ok"
        if row["status"] == "FAIL":
            path = OUT / f"mismatch-gavel-{n}-seed{seed}.json"
            path.write_text(
                json.dumps(
                    {
                        "what": "fairshare min E/w (allocate(fractional=True)) differs from Gavel's LP optimum",
                        "reference_objective": ref_obj,
                        "fairshare_min_e_over_w": published,
                        "unrounded_min_e_over_w": row["unrounded_min_e_over_w"],
                        "freeze_min_e_over_w": row["freeze_min_e_over_w"],
                        "relative_difference": row["relative_difference"],
                        "solver": solver,
                        "instance": inst.to_json(),
                    }
                )
            )
            row["mismatch_file"] = os.path.relpath(path)


def fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


HEADERS = [
    "family",
    "jobs",
    "reference objective",
    "fairshare min E/w (fractional)",
    "relative difference",
    "reference s",
    "fairshare s",
    "fairshare / reference",
    "LP solves",
    "levels",
    "check",
    "unrounded rel. diff",
    "frozen rel. diff",
]


def cells(row: dict) -> list[str]:
    status = row["status"]
    if status == "ERROR":
        return [
            row.get("family", "gavel"),
            f"{row['jobs']:,}",
            fmt(row["reference_objective"], ".9f", "skipped"),
            row["error"][:60],
            "-",
            fmt(row["reference_seconds"], ".2f", "skipped"),
            "-",
            "-",
            "-",
            "-",
            "ERROR",
            "-",
            "-",
        ]
    check = "FAIL" if status == "FAIL" else ("ok" if status == "ok" else status)
    ref_s = fmt(row["reference_seconds"], ".2f", "skipped")
    if row["reference_solver_seconds"] is not None:
        ref_s += f" ({row['reference_solver_seconds']:.2f})"
    return [
        row.get("family", "gavel"),
        f"{row['jobs']:,}",
        fmt(row["reference_objective"], ".9f", "skipped"),
        f"{row['fairshare_min_e_over_w']:.9f}",
        fmt(row["relative_difference"], ".2e"),
        ref_s,
        f"{row['fairshare_seconds']:.2f}",
        fmt(row["ratio"], ".1f"),
        str(row["lp_solves"]),
        str(row["levels"]),
        check,
        fmt(row["unrounded_relative_difference"], ".2e"),
        fmt(row["freeze_relative_difference"], ".1e"),
    ]


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def print_table(rows: list[dict], solver: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print(markdown(rows))
        return
    table = Table(title=f"fairshare vs Gavel max-min fairness LP (reference: cvxpy + {solver})")
    for h in HEADERS:
        table.add_column(h, justify="right")
    for r in rows:
        c = cells(r)
        if c[10] in ("FAIL", "ERROR"):
            c[10] = f"[bold red]{c[10]}[/]"
        table.add_row(*c)
    Console(width=250).print(table)


def reference_only(sizes: list[int], seed: int, solver: str, meta: dict) -> None:
    rows = []
    for n in sizes:
        ref = solve_reference(random_instance(n, seed=seed), solver)
        rows.append(
            {
                "jobs": n,
                "objective": ref.objective,
                "status": ref.status,
                "seconds": ref.wall_seconds,
                "solver_seconds": ref.solver_seconds,
            }
        )
        print(
            f"  n={n}: {solver} objective {ref.objective:.12f}, problem.solve() {ref.wall_seconds:.2f} s "
            f"(solver {fmt(ref.solver_seconds, '.2f')} s), {ref.status}",
            flush=True,
        )
        (OUT / f"gavel-reference-{solver}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated job counts")
    ap.add_argument(
        "--skip-reference-above",
        type=int,
        default=None,
        metavar="N",
        help="do not run the cvxpy reference for more than N jobs",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated: " + ", ".join(FAMILIES))
    ap.add_argument(
        "--reference-only",
        action="store_true",
        help="only time the reference (e.g. to compare solvers); writes gavel-reference-SOLVER.json",
    )
    ap.add_argument("--out", default=str(OUT), help="directory for gavel.json / gavel.md / mismatch files")
    ap.add_argument("--solver", default=None, help="cvxpy solver: CLARABEL (default if installed) or HIGHS")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    solver = args.solver or preferred_solver()
    OUT = Path(args.out).resolve()
    OUT.mkdir(parents=True, exist_ok=True)

    import cvxpy

    meta = {
        **machine(),
        **FINGERPRINT,
        "solver": solver,
        "cvxpy": cvxpy.__version__,
        "seed": args.seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(
        f"reference solver: {solver} via cvxpy {cvxpy.__version__}; python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs ({meta['cpu_model']}); engine sha256 {meta['engine_sha256']} "
        f"(newest file {meta['engine_newest_mtime']})",
        flush=True,
    )
    if args.reference_only:
        reference_only(sizes, args.seed, solver, meta)
        return
    rows = []
    for family, n in [(f, n) for f in args.families.split(",") for n in sizes]:
        skip = args.skip_reference_above is not None and n > args.skip_reference_above
        row = run_size(n, args.seed, solver, skip, family)
        rows.append(row)
        print(
            f"  {family} n={n}: reference {fmt(row['reference_seconds'], '.2f', 'skipped')} s, "
            f"fairshare {fmt(row['fairshare_seconds'], '.2f')} s, rel diff {fmt(row['relative_difference'], '.2e')} "
            f"[{row['status']}{': ' + row['error'] if 'error' in row else ''}]",
            flush=True,
        )
        (OUT / "gavel.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))

    print_table(rows, solver)
    (OUT / "gavel.md").write_text(markdown(rows) + "\n")
    fails = [r for r in rows if r["status"] == "FAIL"]
    errors = [r for r in rows if r["status"] == "ERROR"]
    for r in errors:
        print(f"ERROR at {r['jobs']} jobs: {r['error']}")
    print(
        "reference s = wall time of problem.solve() (solver_stats.solve_time in brackets); "
        "fairshare s = allocate(scenario), rounding included"
    )
    print(
        "unrounded rel. diff = min E/w of the engine's x before _publish rounds it to 6 decimals "
        "(solve_exact); frozen rel. diff = min over requests of the value the water-filling froze "
        "them at (UnitFreeze.value / weight), before the polish LP"
    )
    if fails:
        print(
            f"FAIL: {len(fails)} size(s) differ from Gavel's optimum by more than {TOLERANCE:g} "
            f"(instances saved: {', '.join(r['mismatch_file'] for r in fails)})"
        )
    for n in sizes:
        timed = [r for r in rows if r["jobs"] == n and r.get("ratio") is not None]
        if timed:
            worst = max(timed, key=lambda r: r["ratio"])
            print(f"worst ratio at {n:,} jobs: {worst['ratio']:.1f}x ({worst['family']})")
    print(f"rows written to {OUT / 'gavel.json'}")


if __name__ == "__main__":
    main()
