"""Whole GPUs that are the best whole GPUs (issue 18 section 3): among the roundings within one
GPU of the exact shares, the published one has the lexicographically largest sorted levels
(effective GPUs per unit of weight) that exchanges between two requests of a team can reach."""

from __future__ import annotations

import itertools
import math

import pytest

from fairshare.engine import Allocation, allocate
from fairshare.scenario import OrgNode, Pool, Request, Scenario


def _levels(a: Allocation) -> list[float]:
    return sorted(round(r.effective / r.weight, 6) for r in a.requests)


def _best_by_brute_force(s: Scenario) -> tuple[int, list[float]]:
    """The most GPUs placed, then the lexicographically largest sorted levels, over every rounding
    that keeps each (request, pool) share and each request's total within one GPU (its floor or
    ceiling) of the exact solution, within the pools (a flat lab: no limits, guarantees or minimums)."""
    exact = allocate(s, fractional=True, check_reasons=False)
    speed = {(q.id, p.name): 1.0 if q.speed is None else q.speed.get(p.gpu, 0.0) for q in s.requests for p in s.pools}
    base = {(r.id, p): math.floor(v + 1e-6) for r in exact.requests for p, v in r.gpus.items()}
    cells = [(r.id, p) for r in exact.requests for p, v in r.gpus.items() if v - math.floor(v + 1e-6) > 1e-6]
    best: tuple[int, list[float]] | None = None
    for bits in itertools.product((0, 1), repeat=len(cells)):
        x = dict(base)
        for cell, bit in zip(cells, bits, strict=True):
            x[cell] += bit
        if any(sum(v for (_, p), v in x.items() if p == pool.name) > pool.gpus for pool in s.pools):
            continue
        totals = {r.id: sum(v for (q, _), v in x.items() if q == r.id) for r in exact.requests}
        if any(not math.floor(r.total + 1e-6) <= totals[r.id] <= math.ceil(r.total - 1e-6) for r in exact.requests):
            continue
        levels = sorted(
            round(sum(v * speed[c] for c, v in x.items() if c[0] == r.id) / r.weight, 6) for r in exact.requests
        )
        key = (sum(x.values()), levels)
        if best is None or key > best:
            best = key
    assert best is not None
    return best


def test_the_faster_gpu_goes_to_the_job_it_speeds_up_most() -> None:
    """One V100, one P100, one K80; job0 runs 4 / 2 / 1 on them, job1 3 / 2 / 1: job0 gets the
    V100 (4), job1 the P100 and the K80 (3), not the other way round."""
    s = Scenario(
        name="s",
        reference_gpu="K80",
        pools=[
            Pool(name="v100", gpu="V100", gpus=1),
            Pool(name="p100", gpu="P100", gpus=1),
            Pool(name="k80", gpu="K80", gpus=1),
        ],
        org=OrgNode(name="root"),
        requests=[
            Request(id="job0", team="root", gpus=3, speed={"V100": 4, "P100": 2, "K80": 1}),
            Request(id="job1", team="root", gpus=3, speed={"V100": 3, "P100": 2, "K80": 1}),
        ],
    )
    a = allocate(s)
    assert a.request("job0").gpus == {"v100": 1}
    assert a.request("job1").gpus == {"p100": 1, "k80": 1}


LABS = [
    # found by a randomised search against the brute force: the solver's rounding gave the
    # sorted levels [2, 3, 3]; moving one A100-class GPU between r1 and r2 gives [2, 3, 4]
    Scenario(
        name="s",
        pools=[Pool(name="A", gpu="A", gpus=4), Pool(name="B", gpu="B", gpus=1)],
        org=OrgNode(name="root"),
        requests=[
            Request(id="r0", team="root", gpus=5, speed={"A": 4.0, "B": 4.0}, weight=2.0),
            Request(id="r1", team="root", gpus=4, speed={"A": 3.0, "B": 2.0}),
            Request(id="r2", team="root", gpus=3, speed={"A": 2.0, "B": 1.0}, weight=2.0),
        ],
    ),
    Scenario(
        name="s",
        pools=[Pool(name="A", gpu="A", gpus=2), Pool(name="B", gpu="B", gpus=3), Pool(name="C", gpu="C", gpus=1)],
        org=OrgNode(name="root"),
        requests=[
            Request(id="r0", team="root", gpus=1, speed={"A": 3.0, "B": 4.0, "C": 1.0}, weight=2.0),
            Request(id="r1", team="root", gpus=4, speed={"A": 3.0, "B": 2.0, "C": 4.0}, weight=2.0),
            Request(id="r2", team="root", gpus=5, speed={"A": 3.0, "B": 1.0, "C": 1.0}),
            Request(id="r3", team="root", gpus=4, speed={"A": 1.0, "B": 4.0, "C": 3.0}),
        ],
    ),
]


@pytest.mark.parametrize("s", LABS)
def test_whole_gpus_have_the_lexicographically_best_sorted_levels(s: Scenario) -> None:
    a = allocate(s)
    placed, levels = _best_by_brute_force(s)
    assert sum(r.total for r in a.requests) == placed
    assert _levels(a) == levels
