"""Helpers the policies share: type preference, free capacity, weight-proportional quotas."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from fairshare.simulate.engine import JobState, Snapshot
from fairshare.simulate.trace import Job


def preference(job: Job, types: Sequence[str], current: str | None = None) -> list[str]:
    """Types the job can run on: its current type first (no restart), then fastest first,
    ties in cluster order."""
    usable = [t for t in types if job.rate(t) > 0]
    order = sorted(usable, key=lambda t: (-job.rate(t), types.index(t)))
    if current in order:
        order.remove(current)
        order.insert(0, current)
    return order


def first_fit(job: Job, free: Mapping[str, int], types: Sequence[str], current: str | None = None) -> str | None:
    """The preferred type with room for the whole gang, or None."""
    for t in preference(job, types, current):
        if free[t] >= job.gpus:
            return t
    return None


def keep_running(snap: Snapshot) -> tuple[dict[str, str], dict[str, int]]:
    """Non-preemptive start: every running job keeps its type.  Returns (placement, free)."""
    placement = {st.id: st.placement for st in snap.jobs if st.placement is not None}
    free = dict(snap.capacity)
    for st in snap.jobs:
        if st.placement is not None:
            free[st.placement] -= st.job.gpus
    return placement, free  # type: ignore[return-value]


def queued(snap: Snapshot) -> list[JobState]:
    return [st for st in snap.jobs if st.placement is None]


def split_quota(capacity: Mapping[str, int], weights: Mapping[str, float]) -> dict[str, dict[str, int]]:
    """Each type's GPUs split among teams in proportion to weight, in whole GPUs (largest
    remainder; ties by team name).  team -> type -> GPUs."""
    teams = sorted(weights)
    total = sum(weights.values())
    out: dict[str, dict[str, int]] = {t: {} for t in teams}
    for gpu_type, cap in capacity.items():
        exact = {t: cap * weights[t] / total for t in teams}
        base = {t: math.floor(v + 1e-9) for t, v in exact.items()}
        left = cap - sum(base.values())
        for t in sorted(teams, key=lambda t: (-(exact[t] - base[t]), t))[:left]:
            base[t] += 1
        for t in teams:
            out[t][gpu_type] = base[t]
    return out
