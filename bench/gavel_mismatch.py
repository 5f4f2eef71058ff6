"""Find the smallest Gavel instance on which fairshare's fractional min E/w misses Gavel's optimum.

Searches random_instance(n, seed) for n = 1, 2, ... and a few seeds; the first instance whose
relative difference exceeds 1e-6 is saved to bench/out/mismatch-minimal.json (the instance, the
fairshare scenario as YAML, both objectives and the per-request numbers).  The reference here is
HiGHS (interior point + crossover, 1e-9 tolerances): an optimal vertex, exact to ~1e-12.

    .venv/bin/python bench/gavel_mismatch.py [--max-jobs 64] [--seeds 20]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fairshare.engine import allocate  # noqa: E402
from fairshare.engine._allocate import solve_exact  # noqa: E402  (benchmarks the exact solve itself)
from fairshare.scenario.files import dump_scenario  # noqa: E402
from gavel_reference import random_instance, solve_reference, to_scenario  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def check(n: int, seed: int) -> dict:
    inst = random_instance(n, seed=seed)
    ref = solve_reference(inst, "HIGHS")
    scenario = to_scenario(inst, name=f"gavel-mismatch-{n}-{seed}")
    frac = allocate(scenario, fractional=True)
    published = min(r.effective / r.weight for r in frac.requests)
    sol = solve_exact(scenario)
    pr = sol.problem
    e = np.bincount(pr.cell_req, weights=sol.fill.x * pr.cell_speed, minlength=pr.n_requests)
    frozen = float(min(o.freeze.value / o.weight for o in sol.fill.outcomes.values()))
    return {
        "n_jobs": n,
        "seed": seed,
        "reference_objective": ref.objective,
        "reference_solver": ref.solver,
        "fairshare_min_e_over_w": published,
        "unrounded_min_e_over_w": float((e / pr.req_weight).min()),
        "freeze_min_e_over_w": frozen,
        "relative_difference": abs(published - ref.objective) / ref.objective,
        "unrounded_relative_difference": abs(float((e / pr.req_weight).min()) - ref.objective) / ref.objective,
        "freeze_relative_difference": abs(frozen - ref.objective) / ref.objective,
        "requests": [
            {
                "id": r.id,
                "weight": r.weight,
                "gpus": r.gpus,
                "effective": r.effective,
                "e_over_w_unrounded": float(e[i] / pr.req_weight[i]),
            }
            for i, r in enumerate(frac.requests)
        ],
        "reference_effective_over_w": (
            (inst.throughput.T * inst.scale[:, None] / inst.t_equal()[:, None] * ref.X).sum(axis=1) / inst.weight
        ).tolist(),
        "instance": inst.to_json(),
        "scenario_yaml": dump_scenario(scenario),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-jobs", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--tolerance", type=float, default=1e-6)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for n in range(1, args.max_jobs + 1):
        for seed in range(args.seeds):
            res = check(n, seed)
            if res["relative_difference"] > args.tolerance:
                path = OUT / "mismatch-minimal.json"
                path.write_text(json.dumps(res, indent=2))
                print(f"smallest failing instance: {n} jobs, seed {seed}")
                for key in (
                    "reference_objective",
                    "fairshare_min_e_over_w",
                    "unrounded_min_e_over_w",
                    "freeze_min_e_over_w",
                    "relative_difference",
                    "unrounded_relative_difference",
                    "freeze_relative_difference",
                ):
                    print(f"  {key}: {res[key]!r}")
                print(f"saved to {path}")
                print("scenario:\n" + res["scenario_yaml"])
                return
    print(f"no instance up to {args.max_jobs} jobs x {args.seeds} seeds differs by more than {args.tolerance:g}")


if __name__ == "__main__":
    main()
