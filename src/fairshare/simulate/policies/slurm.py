"""Slurm's multifactor priority with the Fair Tree fair-share factor (flat tree: one account
per team under root), no preemption.

Usage is GPU-seconds, decayed with `half_life` (PriorityDecayHalfLife).  Fair Tree ranks
teams by Level FS = S / U (S: the team's share of the weights, U: its share of the decayed
usage; no usage ranks first) and gives the team ranked r-th of N the factor (N - r) / N
(tied teams share the higher factor).  priority = w_fairshare x factor + w_age x min(age /
max_age, 1).  Pending jobs start in priority order; without backfill the first that does not
fit blocks the rest (sched/builtin), with `backfill` later jobs may start around it.

Within a team every job has the same fair-share factor and older jobs the higher age factor,
so a team's queue in arrival order is already in priority order: the priority order of all
pending jobs is the merge of the teams' queues by (priority, arrival, id), and without
backfill only its head is walked."""

from __future__ import annotations

import heapq

from fairshare.simulate.engine import Snapshot
from fairshare.simulate.policies._common import first_fit, keep_running


class SlurmFairTree:
    name = "slurm"
    stable = False  # priorities change with age and decaying usage

    def __init__(
        self,
        half_life_hours: float = 24.0 * 7,
        weight_fairshare: float = 10_000.0,
        weight_age: float = 1_000.0,
        max_age_hours: float = 24.0 * 7,
        backfill: bool = False,
    ):
        if half_life_hours <= 0 or max_age_hours <= 0:
            raise ValueError("half-life and max age must be positive")
        self.half_life = half_life_hours * 3600.0
        self.w_fs, self.w_age = weight_fairshare, weight_age
        self.max_age = max_age_hours * 3600.0
        self.backfill = backfill
        self.usage: dict[str, float] = {}
        self.last: float | None = None

    def _decay(self, snap: Snapshot) -> None:
        # usage of the previous round, then decay to now (continuous decay, applied per round)
        if self.last is not None:
            factor = 0.5 ** ((snap.now - self.last) / self.half_life)
            self.usage = {t: u * factor for t, u in self.usage.items()}
        for team, used in snap.last_round_usage.items():
            self.usage[team] = self.usage.get(team, 0.0) + used
        self.last = snap.now

    def fairshare_factors(self, weights: dict[str, float]) -> dict[str, float]:
        total_w = sum(weights.values())
        total_u = sum(self.usage.get(t, 0.0) for t in weights)
        level = {}
        for team, w in weights.items():
            u = self.usage.get(team, 0.0) / total_u if total_u > 0 else 0.0
            level[team] = float("inf") if u <= 0 else (w / total_w) / u
        n = len(weights)
        ranked = sorted(level.values(), reverse=True)
        # teams strictly above: the count of levels greater than this one
        return {t: (n - _count_above(ranked, level[t])) / n for t in weights}

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        self._decay(snap)
        placement, free = keep_running(snap)
        if not snap.queue or not any(free.values()):
            return placement  # nothing could start, whatever the order
        fs = self.fairshare_factors(dict(snap.teams))
        now, w_fs, w_age, max_age = snap.now, self.w_fs, self.w_age, self.max_age

        def key(st) -> tuple[float, float, str]:
            age = min(max(now - st.job.arrival, 0.0) / max_age, 1.0)
            return (-(w_fs * fs[st.team] + w_age * age), st.job.arrival, st.id)

        heads = [(key(q[0]), team, 0) for team, q in snap.team_queue.items() if q]
        heapq.heapify(heads)
        while heads:
            _, team, i = heapq.heappop(heads)
            q = snap.team_queue[team]
            st = q[i]
            if i + 1 < len(q):
                heapq.heappush(heads, (key(q[i + 1]), team, i + 1))
            t = first_fit(st, free)
            if t is None:
                if self.backfill:
                    continue
                break
            placement[st.id] = t
            free[t] -= st.gpus
        return placement


def _count_above(ranked_desc: list[float], value: float) -> int:
    n = 0
    for v in ranked_desc:
        if v > value:
            n += 1
        else:
            break
    return n
