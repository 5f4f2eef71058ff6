"""Instance families for bench_gavel.py: Gavel-style flat instances that stress the engine in
different ways (issue 16).  Each is a function (n_jobs, seed) -> Instance, written from the
family's description, independent of the engine.

    gavel        Gavel's simulator (gavel_reference.random_instance): V100 / P100 / K80
    wide         per-job speed-ups: newest 1-4x the oldest, the middle 0.8-2.5x; weights 1 or 2
    capped       0.9 GPUs per job: many jobs reach their demand, so many levels freeze
    eight_types  8 GPU types, each job's speed on each drawn 0.2-5x independently
    weights      weights spanning 1-10 (integers)
    ties         a third of the jobs run equally fast on every type (input-bound), the others as
                 in gavel; many large jobs (scale 1-16); a degenerate LP with many equal choices
    two_sites    two sites (site B half the size, its GPUs 0.8-1.2x site A's per job), 35% of the
                 jobs bound to each site (no speed on the other site's types), heavy-tailed sizes
                 (1-64 GPUs, P(s) ~ s^-1.5), weights 1-4, 0.6 GPUs per job: some jobs reach their
                 demand; added after the engine was tuned on the others, to check it on a new shape
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gavel_reference import GPU_TYPES, SCALE_FACTORS, SCALE_PROBS, Instance, random_instance


def _scale(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(SCALE_FACTORS, size=n, p=SCALE_PROBS).astype(int)


def _workers(n: int, types: int, gpus_per_job: float) -> np.ndarray:
    return np.full(types, max(1, int(round(n * gpus_per_job / types))), dtype=int)


def wide(n: int, seed: int = 0) -> Instance:
    rng = np.random.default_rng(seed)
    oldest = rng.uniform(1.0, 10.0, n)
    newest = oldest * rng.uniform(1.0, 4.0, n)
    middle = oldest * rng.uniform(0.8, 2.5, n)
    weight = rng.choice([1.0, 2.0], size=n)
    return Instance(
        list(GPU_TYPES), np.vstack([newest, middle, oldest]), _scale(rng, n), weight, _workers(n, 3, 0.25), seed
    )


def capped(n: int, seed: int = 0) -> Instance:
    return random_instance(n, seed=seed, gpus_per_job=0.9)


def eight_types(n: int, seed: int = 0) -> Instance:
    rng = np.random.default_rng(seed)
    types = ["H200", "H100", "A100", "L40S", "A10", "V100", "T4", "K80"]
    base = rng.uniform(1.0, 10.0, n)
    throughput = np.vstack([base * rng.uniform(0.2, 5.0, n) for _ in types])
    weight = np.where(rng.random(n) < 0.1, 2.0, 1.0)
    return Instance(types, throughput, _scale(rng, n), weight, _workers(n, len(types), 0.25), seed)


def weights(n: int, seed: int = 0) -> Instance:
    inst = random_instance(n, seed=seed)
    inst.weight = np.random.default_rng(seed + 1).integers(1, 11, n).astype(float)
    return inst


def ties(n: int, seed: int = 0) -> Instance:
    rng = np.random.default_rng([seed, 7])
    inst = random_instance(n, seed=seed)
    flat = rng.random(n) < 1 / 3
    inst.throughput[:, flat] = inst.throughput[0, flat]
    inst.scale = rng.choice([1, 2, 4, 8, 16], size=n, p=[0.4, 0.2, 0.2, 0.12, 0.08]).astype(int)
    inst.workers = _workers(n, 3, 0.5)
    return inst


def two_sites(n: int, seed: int = 0) -> Instance:
    rng = np.random.default_rng([seed, 11])
    base = random_instance(n, seed=seed).throughput
    throughput = np.vstack([base, base * rng.uniform(0.8, 1.2, base.shape)])
    site = rng.choice(3, size=n, p=[0.35, 0.35, 0.3])  # 0: site A only, 1: site B only, 2: either
    throughput[3:, site == 0] = 0.0
    throughput[:3, site == 1] = 0.0
    sizes = np.array([1, 2, 4, 8, 16, 32, 64])
    p = sizes**-1.5
    scale = rng.choice(sizes, size=n, p=p / p.sum())
    weight = rng.integers(1, 5, size=n).astype(float)
    per_pool = n * 0.6 / 4.5  # site A's three pools hold twice as many GPUs as site B's
    workers = np.array([per_pool] * 3 + [per_pool / 2] * 3).round().astype(int)
    types = [*GPU_TYPES, *(f"{t}B" for t in GPU_TYPES)]
    return Instance(types, throughput, scale.astype(int), weight, workers, seed)


FAMILIES: dict[str, Callable[[int, int], Instance]] = {
    "gavel": lambda n, seed=0: random_instance(n, seed=seed),
    "wide": wide,
    "capped": capped,
    "eight_types": eight_types,
    "weights": weights,
    "ties": ties,
    "two_sites": two_sites,
}
