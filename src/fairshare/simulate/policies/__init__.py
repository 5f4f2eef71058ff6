"""Scheduling policies: each a small module with one class that turns a Snapshot into a
placement (job id -> GPU type).  `make(name, **params)` builds a fresh one per replay."""

from __future__ import annotations

from collections.abc import Callable

from fairshare.simulate.engine import Policy
from fairshare.simulate.policies.fairshare import Fairshare
from fairshare.simulate.policies.fifo import Fifo
from fairshare.simulate.policies.gavel import GavelMaxMin
from fairshare.simulate.policies.kueue import Kueue
from fairshare.simulate.policies.quota import StaticQuota
from fairshare.simulate.policies.slurm import SlurmFairTree

POLICIES: dict[str, Callable[..., Policy]] = {
    "fifo": Fifo,
    "quota": StaticQuota,
    "slurm": SlurmFairTree,
    "kueue": Kueue,
    "gavel": GavelMaxMin,
    "fairshare": Fairshare,
}

DESCRIPTIONS = {
    "fifo": "first in, first out over the whole cluster; no preemption",
    "quota": "static per-team quotas (Philly virtual clusters), no borrowing",
    "slurm": "Slurm multifactor priority: Fair Tree fair-share with usage decay, plus age",
    "kueue": "Kueue nominal quota per team, borrowing in one cohort, reclaim by preemption",
    "gavel": "Gavel heterogeneity-aware max-min fairness across jobs",
    "fairshare": "fairshare engine: weighted max-min across teams, FIFO within a team",
}


def make(name: str, **params: object) -> Policy:
    """A fresh policy (policies keep state across rounds of one replay)."""
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}") from None
    return factory(**params)
