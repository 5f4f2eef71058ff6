"""FIFO: jobs start in arrival order on their fastest type with room; the first job that
fits nowhere blocks every later one (no backfill); running jobs are never preempted."""

from __future__ import annotations

from fairshare.simulate.engine import Snapshot
from fairshare.simulate.policies._common import first_fit, keep_running


class Fifo:
    name = "fifo"
    stable = True

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        placement, free = keep_running(snap)
        for st in snap.queue:  # stops at the first job that fits nowhere
            t = first_fit(st, free)
            if t is None:
                break
            placement[st.id] = t
            free[t] -= st.gpus
        return placement
