"""Static quotas (Philly's virtual clusters): each team owns a weight-proportional slice of
every GPU type and never borrows.  Within a team, FIFO without backfill, no preemption.

A job larger than its team's slice of every type it can use could never start; such an
*oversized* job may start on idle GPUs once its team has nothing else running (so the trace
can finish); `oversized` counts how often that happened.

Jobs are considered in arrival order across teams (an oversized job takes idle GPUs before a
later job of another team); a team's first job that cannot start blocks the rest of its
queue, so only the teams' queue heads are walked (merged in arrival order)."""

from __future__ import annotations

import heapq

from fairshare.simulate.engine import Snapshot
from fairshare.simulate.policies._common import keep_running, prefer, split_quota


class StaticQuota:
    name = "quota"
    stable = True

    def __init__(self) -> None:
        self.quota: dict[str, dict[str, int]] | None = None
        self.oversized = 0

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        if self.quota is None:
            self.quota = split_quota(snap.capacity, snap.teams)
        placement, free = keep_running(snap)
        if not snap.queue or not any(free.values()):
            return placement
        started: dict[str, dict[str, int]] = {}  # team -> type -> GPUs started this round
        heads = [(q[0].seq, team, 0) for team, q in snap.team_queue.items() if q]
        heapq.heapify(heads)
        while heads:
            _, team, i = heapq.heappop(heads)
            q = snap.team_queue[team]
            st = q[i]
            quota, held, g = self.quota[team], snap.held[team], st.gpus
            mine = started.get(team, {})
            chosen = None
            for t in prefer(st):
                if held[t] + mine.get(t, 0) + g <= quota[t] and free[t] >= g:
                    chosen = t
                    break
            if chosen is None and not mine and not any(held.values()) and all(g > quota[t] for t in prefer(st)):
                chosen = next((t for t in prefer(st) if free[t] >= g), None)
                if chosen is not None:
                    self.oversized += 1
            if chosen is None:
                continue  # the team is blocked for this round
            placement[st.id] = chosen
            free[chosen] -= g
            mine[chosen] = mine.get(chosen, 0) + g
            started[team] = mine
            if i + 1 < len(q):
                heapq.heappush(heads, (q[i + 1].seq, team, i + 1))
        return placement
