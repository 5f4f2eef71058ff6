"""Static quotas (Philly's virtual clusters): each team owns a weight-proportional slice of
every GPU type and never borrows.  Within a team, FIFO without backfill, no preemption.

A job larger than its team's slice of every type it can use could never start; such an
*oversized* job may start on idle GPUs once its team has nothing else running (so the trace
can finish); `oversized` counts how often that happened."""

from __future__ import annotations

from fairshare.simulate.engine import Snapshot
from fairshare.simulate.policies._common import keep_running, preference, queued, split_quota


class StaticQuota:
    name = "quota"
    stable = True

    def __init__(self) -> None:
        self.quota: dict[str, dict[str, int]] | None = None
        self.oversized = 0

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        if self.quota is None:
            self.quota = split_quota(snap.capacity, snap.teams)
        types = list(snap.capacity)
        placement, free = keep_running(snap)
        used = {team: dict.fromkeys(types, 0) for team in snap.teams}
        busy = {team: False for team in snap.teams}
        for st in snap.jobs:
            if st.placement is not None:
                used[st.team][st.placement] += st.job.gpus
                busy[st.team] = True
        blocked: set[str] = set()
        for st in queued(snap):
            team, job = st.team, st.job
            if team in blocked:
                continue
            quota = self.quota[team]
            chosen = None
            for t in preference(job, types):
                if used[team][t] + job.gpus <= quota[t] and free[t] >= job.gpus:
                    chosen = t
                    break
            if chosen is None and not busy[team] and all(job.gpus > quota[t] for t in preference(job, types)):
                chosen = next((t for t in preference(job, types) if free[t] >= job.gpus), None)
                if chosen is not None:
                    self.oversized += 1
            if chosen is None:
                blocked.add(team)
                continue
            placement[st.id] = chosen
            free[chosen] -= job.gpus
            used[team][chosen] += job.gpus
            busy[team] = True
        return placement
