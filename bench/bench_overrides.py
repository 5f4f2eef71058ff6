"""What absorbing overrides by their own branch costs, and what it changes, against the plain re-solve.

On synthetic_scenario(n, seed=0), K requests are pinned (each at half, or at double, what the
engine gives it; one after the other).  For each K:
  * time: `allocate_in_order(s, pins)` (the service's solve since issue 15: the pins replayed
    oldest first, each absorbed by its own branch) against `allocate_with_pins(s, pins)` (the
    plain re-solve around all pins, the reference), run in alternated pairs, medians and the
    median of the per-pair ratios;
  * effect: how many requests outside the top-level branch of every pinned request change GPUs,
    and how many GPUs they move, under each.

    .venv/bin/python bench/bench_overrides.py [--n 1000] [--pins 1,5,10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from common import engine_fingerprint
from fairshare.engine import Pin, allocate, allocate_in_order, allocate_with_pins, place
from fairshare.scenario.synthetic import synthetic_scenario


def top_branch(scenario, team: str) -> str:
    for child in scenario.org.children:
        if any(n.name == team for n in child.walk()):
            return child.name
    return scenario.org.name


def moved(alloc, base, requests) -> tuple[int, int]:
    """How many of `requests` get another number of GPUs than in `base`, and how many GPUs move."""
    d = [abs(alloc.request(r.id).total - base.request(r.id).total) for r in requests]
    return sum(1 for x in d if x > 0), int(sum(d))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--pins", default="1,5,10")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    s = synthetic_scenario(args.n, seed=0)
    base = allocate(s)
    rng = np.random.default_rng(1)
    print(f"synthetic_scenario({args.n}), engine {engine_fingerprint()['engine_sha256']}")
    print(f"{'pins':>4} {'replay s':>9} {'re-solve s':>10} {'ratio':>6} | outside-branch moved: replay / re-solve")
    for k in [int(x) for x in args.pins.split(",")]:
        chosen = rng.choice(len(s.requests), size=k, replace=False)
        pins = []
        for i in chosen:
            req = s.requests[int(i)]
            have = {p: int(v) for p, v in base.request(req.id).gpus.items()}
            total = sum(have.values())
            want = min(req.gpus, max(total * 2, 1)) if rng.random() < 0.5 else total // 2
            pins.append(Pin(req.id, place(s, req.id, want, have), "bench"))
        new_t, old_t, ratios = [], [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            new = allocate_in_order(s, pins)
            t1 = time.perf_counter()
            old = allocate_with_pins(s, pins)
            t2 = time.perf_counter()
            new_t.append(t1 - t0)
            old_t.append(t2 - t1)
            ratios.append((t1 - t0) / (t2 - t1))
        branches = {top_branch(s, next(r.team for r in s.requests if r.id == p.request)) for p in pins}
        outside = [r for r in s.requests if top_branch(s, r.team) not in branches]

        (nn, ng), (on, og) = moved(new, base, outside), moved(old, base, outside)
        print(
            f"{k:>4} {statistics.median(new_t):>9.3f} {statistics.median(old_t):>10.3f} "
            f"{statistics.median(ratios):>6.2f} | {nn} requests {ng} GPUs / {on} requests {og} GPUs"
        )


if __name__ == "__main__":
    main()
