"""Helpers the policies share: type preference, free capacity, weight-proportional quotas."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from fairshare.simulate.engine import JobState, Snapshot, type_order
from fairshare.simulate.trace import Job


def preference(job: Job, types: Sequence[str], current: str | None = None) -> list[str]:
    """Types the job can run on: its current type first (no restart), then fastest first,
    ties in cluster order."""
    order = list(type_order(job, types))
    if current in order:
        order.remove(current)
        order.insert(0, current)
    return order


def prefer(st: JobState, current: str | None = None) -> Sequence[str]:
    """`preference` for an active job, from the order the engine computed once for it."""
    order = st.order
    if current is None or order[0] == current or current not in order:
        return order
    return (current, *(t for t in order if t != current))


def first_fit(st: JobState, free: Mapping[str, int], current: str | None = None) -> str | None:
    """The preferred type with room for the whole gang, or None."""
    g = st.gpus
    for t in prefer(st, current):
        if free[t] >= g:
            return t
    return None


def keep_running(snap: Snapshot) -> tuple[dict[str, str], dict[str, int]]:
    """Non-preemptive start: every running job keeps its type.  Returns (placement, free), both
    the policy's own copies."""
    return dict(snap.assigned), dict(snap.free)


def queued(snap: Snapshot) -> Sequence[JobState]:
    """The waiting jobs in arrival order (read-only)."""
    return snap.queue


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
