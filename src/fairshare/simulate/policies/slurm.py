"""Slurm's multifactor priority with the Fair Tree fair-share factor (flat tree: one account
per team under root), no preemption.

Usage is GPU-seconds, decayed with `half_life` (PriorityDecayHalfLife).  Fair Tree ranks
teams by Level FS = S / U (S: the team's share of the weights, U: its share of the decayed
usage; no usage ranks first) and gives the team ranked r-th of N the factor (N - r) / N
(tied teams share the higher factor).  priority = w_fairshare x factor + w_age x min(age /
max_age, 1).  Pending jobs start in priority order; without backfill the first that does not
fit blocks the rest (sched/builtin), with `backfill` later jobs may start around it."""

from __future__ import annotations

from fairshare.simulate.engine import Snapshot
from fairshare.simulate.policies._common import first_fit, keep_running, queued


class SlurmFairTree:
    name = "slurm"
    stable = False  # priorities change with age and decaying usage

    def __init__(self, half_life_hours: float = 24.0 * 7, weight_fairshare: float = 10_000.0,
                 weight_age: float = 1_000.0, max_age_hours: float = 24.0 * 7, backfill: bool = False):
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
        return {t: (n - sum(1 for v in level.values() if v > level[t])) / n for t in weights}

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        self._decay(snap)
        fs = self.fairshare_factors(dict(snap.teams))
        placement, free = keep_running(snap)
        types = list(snap.capacity)

        def priority(st) -> float:
            age = min(max(snap.now - st.job.arrival, 0.0) / self.max_age, 1.0)
            return self.w_fs * fs[st.team] + self.w_age * age

        for st in sorted(queued(snap), key=lambda s: (-priority(s), s.job.arrival, s.id)):
            t = first_fit(st.job, free, types)
            if t is None:
                if self.backfill:
                    continue
                break
            placement[st.id] = t
            free[t] -= st.job.gpus
        return placement
