"""reference_gpu is a policy lever, and policy.normalize equal_share (Gavel's normalisation) removes it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from fairshare.engine import allocate
from fairshare.scenario import Normalize, OrgNode, Policy, Pool, Request, Scenario

# job0 does 2 units of work per step on a V100 and 1 on a K80; job1 3 and 2 (one GPU each at a time)
THROUGHPUT = {"job0": {"V100": 2.0, "K80": 1.0}, "job1": {"V100": 3.0, "K80": 2.0}}


def two_jobs(reference: str, normalize: Normalize = Normalize.reference) -> Scenario:
    """One V100 and one K80; speeds are the throughputs divided by the reference type's."""
    return Scenario(
        name="two-jobs",
        reference_gpu=reference,
        pools=[Pool(name="v100", gpu="V100", gpus=1), Pool(name="k80", gpu="K80", gpus=1)],
        org=OrgNode(name="lab"),
        requests=[
            Request(id=job, team="lab", gpus=1, speed={g: v / speeds[reference] for g, v in speeds.items()})
            for job, speeds in THROUGHPUT.items()
        ],
        policy=Policy(normalize=normalize),
    )


def test_the_reference_gpu_changes_who_gets_the_v100() -> None:
    """With the K80 as reference job0 gets 1/3 of the V100; with the V100 as reference, 0.6."""
    k80 = allocate(two_jobs("K80"), fractional=True)
    v100 = allocate(two_jobs("V100"), fractional=True)
    assert k80.request("job0").gpus["v100"] == pytest.approx(1 / 3, abs=1e-6)
    assert v100.request("job0").gpus["v100"] == pytest.approx(0.6, abs=1e-6)


def test_equal_share_gives_the_same_allocation_whatever_the_reference() -> None:
    k80 = allocate(two_jobs("K80", Normalize.equal_share), fractional=True)
    v100 = allocate(two_jobs("V100", Normalize.equal_share), fractional=True)
    for job in THROUGHPUT:
        for pool in ("v100", "k80"):
            assert k80.request(job).gpus.get(pool, 0) == pytest.approx(v100.request(job).gpus.get(pool, 0), abs=1e-6)


def gavel_direct() -> tuple[float, np.ndarray]:
    """Gavel's normalised max-min, solved directly: max t with each job's throughput over its
    throughput on an equal share of the cluster (half of each GPU) >= t.  Variables: job0 on
    V100, K80, job1 on V100, K80, t."""
    jobs = list(THROUGHPUT)
    equal = [sum(THROUGHPUT[j].values()) / len(jobs) for j in jobs]
    a_ub, b_ub = [], []
    for i, j in enumerate(jobs):  # t - throughput / equal <= 0
        row = [0.0] * 5
        row[2 * i], row[2 * i + 1] = -THROUGHPUT[j]["V100"] / equal[i], -THROUGHPUT[j]["K80"] / equal[i]
        row[4] = 1.0
        a_ub.append(row)
        b_ub.append(0.0)
    a_ub += [[1, 0, 1, 0, 0], [0, 1, 0, 1, 0], [1, 1, 0, 0, 0], [0, 0, 1, 1, 0]]  # each GPU once, each job one GPU
    b_ub += [1, 1, 1, 1]
    res = linprog([0, 0, 0, 0, -1], A_ub=a_ub, b_ub=b_ub, bounds=[(0, None)] * 5, method="highs")
    assert res.status == 0
    return float(res.x[4]), res.x[:4]


def test_equal_share_is_gavels_normalised_max_min() -> None:
    optimum, _ = gavel_direct()
    alloc = allocate(two_jobs("K80", Normalize.equal_share), fractional=True)
    ratios = []
    for job, speeds in THROUGHPUT.items():
        r = alloc.request(job)
        work = r.gpus.get("v100", 0) * speeds["V100"] + r.gpus.get("k80", 0) * speeds["K80"]
        ratios.append(work / (sum(speeds.values()) / 2))
        assert r.effective == pytest.approx(ratios[-1], abs=1e-6)  # effective GPUs are the normalised throughput
    assert min(ratios) == pytest.approx(optimum, abs=1e-6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.floats(0.2, 3.0),
            st.floats(0.2, 3.0),
            st.floats(0.2, 3.0),
            st.integers(1, 6),
            st.sampled_from([0.5, 4.0]),
        ),
        min_size=2,
        max_size=6,
    )
)
def test_equal_share_does_not_depend_on_the_unit_of_each_requests_speeds(jobs: list[tuple]) -> None:
    """Multiplying one request's speeds by a constant (another reference) changes nothing."""

    def lab(scaled: bool) -> Scenario:
        return Scenario(
            name="units",
            pools=[Pool(name="a", gpu="A", gpus=4), Pool(name="b", gpu="B", gpus=3), Pool(name="c", gpu="C", gpus=2)],
            org=OrgNode(name="lab"),
            requests=[
                Request(
                    id=f"j{i}",
                    team="lab",
                    gpus=n,
                    speed={g: round(v * (k if scaled else 1.0), 6) for g, v in zip("ABC", (a, b, c), strict=True)},
                )
                for i, (a, b, c, n, k) in enumerate(jobs)
            ],
            policy=Policy(normalize=Normalize.equal_share),
        )

    plain, scaled = allocate(lab(False), fractional=True), allocate(lab(True), fractional=True)
    for p, q in zip(plain.requests, scaled.requests, strict=True):
        assert p.effective == pytest.approx(q.effective, abs=1e-5, rel=1e-5)
