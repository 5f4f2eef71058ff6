"""Synthetic organisations for benchmarks and property tests (seeded, deterministic)."""

from __future__ import annotations

import numpy as np

from fairshare.scenario import OrgNode, Policy, Pool, Request, Scenario
from fairshare.scenario.model import Priority

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
    minimums: float = 0.0,
    extras: bool = False,
) -> Scenario:
    """A lab with a `len(branching)+1`-level tree, every type at every site, and requests
    spread over the leaf teams whose total demand is `oversubscription` x capacity.

    `minimums`: the share of the large requests (64 GPUs or more) that are all-or-nothing
    (`min` = their size, as pre-training runs).  `extras`: some priorities (a tenth high, a
    twentieth low) and a limit on one GPU type for every fifth top-level node.  Both are drawn
    from a second generator, so the lab without them is the one the same seed always gave."""
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
    if minimums or extras:
        requests, org = _with_extras(requests, org, types, per_pool * len(sites), minimums, extras, seed)
    pools = [Pool(name=f"{t.lower()}-{s}", gpu=t, site=s, gpus=per_pool) for t in types for s in sites]
    return Scenario(
        name=f"synthetic-{n_requests}",
        reference_gpu="A100" if "A100" in types else types[0],
        pools=pools,
        org=org,
        requests=requests,
        policy=Policy(),
    )


def _with_extras(
    requests: list[Request],
    org: OrgNode,
    types: list[str],
    gpus_per_type: int,
    minimums: float,
    extras: bool,
    seed: int,
) -> tuple[list[Request], OrgNode]:
    """The requests with minimums (and priorities), the org with limits: see synthetic_scenario."""
    rng = np.random.default_rng([seed, 16])
    draw = rng.random(len(requests))
    rank = rng.random(len(requests))
    out = []
    for r, u, v in zip(requests, draw.tolist(), rank.tolist(), strict=True):
        update: dict[str, object] = {}
        if r.gpus >= 64 and u < minimums:
            update["min"] = r.gpus
        if extras:
            update["priority"] = Priority.high if v < 0.1 else (Priority.low if v > 0.95 else Priority.normal)
        out.append(r.model_copy(update=update) if update else r)
    if extras:
        kids = [
            c.model_copy(update={"limit": {types[i % len(types)]: max(1, gpus_per_type // 8)}}) if i % 5 == 0 else c
            for i, c in enumerate(org.children)
        ]
        org = org.model_copy(update={"children": kids})
    return [Request.model_validate(r.model_dump()) for r in out], org
