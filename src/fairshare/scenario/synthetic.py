"""Synthetic organisations for benchmarks and property tests (seeded, deterministic)."""

from __future__ import annotations

import numpy as np

from fairshare.scenario import OrgNode, Policy, Pool, Request, Scenario

GPU_TYPES = ["H200", "H100", "A100", "L40S", "A10", "V100", "T4", "K80"]
SPEED = {"H200": 3.0, "H100": 2.2, "A100": 1.0, "L40S": 0.9, "A10": 0.5, "V100": 0.45, "T4": 0.25, "K80": 0.12}


def synthetic_scenario(
    n_requests: int,
    *,
    n_types: int = 8,
    sites: tuple[str, ...] = ("us-east", "us-west", "eu"),
    branching: tuple[int, ...] = (4, 5, 5),
    oversubscription: float = 2.0,
    seed: int = 0,
) -> Scenario:
    """A lab with a `len(branching)+1`-level tree, every type at every site, and requests
    spread over the leaf teams whose total demand is `oversubscription` x capacity."""
    rng = np.random.default_rng(seed)
    types = GPU_TYPES[:n_types]

    counter = iter(range(10**9))

    def build(level: int, prefix: str) -> OrgNode:
        if level == len(branching):
            return OrgNode(name=prefix, weight=float(rng.choice([1, 1, 2, 3])))
        kids = [build(level + 1, f"{prefix}-{i}") for i in range(branching[level])]
        return OrgNode(name=prefix, weight=float(rng.choice([1, 2, 3])), children=kids)

    org = build(0, "org")
    org = OrgNode(name="lab", children=org.children)
    teams = [n.name for n in org.walk() if not n.children]

    sizes = rng.choice(
        [1, 2, 4, 8, 16, 32, 64, 128, 256], size=n_requests, p=[0.1, 0.1, 0.15, 0.2, 0.15, 0.12, 0.1, 0.05, 0.03]
    )
    # a catalogue of model families (as Gavel's 26 measured models): speed is a property of
    # the model on a GPU type, so requests of one family share their speed vector
    catalogue = []
    for _ in range(26):
        usable = rng.choice(types, size=int(rng.integers(2, min(5, len(types)) + 1)), replace=False)
        catalogue.append({str(t): round(SPEED[t] * rng.uniform(0.7, 1.3), 3) for t in usable})
    requests = []
    for i in range(n_requests):
        speed = catalogue[int(rng.integers(len(catalogue)))]
        req_sites = (
            None
            if rng.random() < 0.6
            else sorted(rng.choice(sites, size=int(rng.integers(1, len(sites))), replace=False).tolist())
        )
        requests.append(
            Request(
                id=f"r{next(counter)}",
                team=str(rng.choice(teams)),
                gpus=int(sizes[i]),
                speed=speed,
                sites=req_sites,
                weight=float(rng.choice([1, 1, 1, 2])),
            )
        )
    total_demand = float(sizes.sum())
    per_pool = max(1, int(total_demand / oversubscription / (len(types) * len(sites))))
    pools = [Pool(name=f"{t.lower()}-{s}", gpu=t, site=s, gpus=per_pool) for t in types for s in sites]
    return Scenario(
        name=f"synthetic-{n_requests}",
        reference_gpu="A100" if "A100" in types else types[0],
        pools=pools,
        org=org,
        requests=requests,
        policy=Policy(),
    )
