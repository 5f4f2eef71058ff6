"""Kueue: one ClusterQueue per team with a nominal quota per GPU type (ResourceFlavor), all in
one cohort; StrictFIFO queues; borrowing of the cohort's unused quota without limit; reclaim
within the cohort by preemption (reclaimWithinCohort: Any); no preemption inside a queue.

Each round repeats Kueue's scheduling cycle until nothing more is admitted: the head of every
queue is considered, heads that need no borrowing first, then by creation time.  A head tries
the flavors in the cluster's order (flavor fungibility: whenCanBorrow Borrow, whenCanPreempt
TryNextFlavor): the first flavor where it fits wins, borrowing if over its nominal quota; if it
fits nowhere but would be within its nominal quota on a flavor once borrowers give back, the
most recently started workloads of queues borrowing that flavor are preempted.  A head that
cannot be admitted blocks its queue for the round.  Nominal quotas are the weight-proportional
split of every type, as for static quotas."""

from __future__ import annotations

from fairshare.simulate.engine import JobState, Snapshot
from fairshare.simulate.policies._common import keep_running, queued, split_quota


class Kueue:
    name = "kueue"
    stable = False

    def __init__(self) -> None:
        self.nominal: dict[str, dict[str, int]] | None = None

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        if self.nominal is None:
            self.nominal = split_quota(snap.capacity, snap.teams)
        nominal = self.nominal
        types = list(snap.capacity)
        placement, free = keep_running(snap)
        usage = {team: dict.fromkeys(types, 0) for team in snap.teams}
        running: dict[str, JobState] = {}
        order: dict[str, tuple[float, int]] = {}  # admission recency for victim choice
        for i, st in enumerate(snap.jobs):
            if st.placement is not None:
                usage[st.team][st.placement] += st.job.gpus
                running[st.id] = st
                order[st.id] = (st.started if st.started is not None else snap.now, i)
        queues: dict[str, list[JobState]] = {}
        for st in queued(snap):
            queues.setdefault(st.team, []).append(st)
        blocked: set[str] = set()
        stamp = len(snap.jobs)

        def option(st: JobState):
            job, team, g = st.job, st.team, st.job.gpus
            reclaim = None
            for t in types:
                if job.rate(t) <= 0:
                    continue
                within = usage[team][t] + g <= nominal[team][t]
                if free[t] >= g:
                    return (t, "fit" if within else "borrow", [])
                if within and reclaim is None:
                    victims, room = [], free[t]
                    sim = {o: usage[o][t] for o in usage}
                    cands = sorted((r for r in running.values() if placement[r.id] == t and r.team != team),
                                   key=lambda r: (order[r.id][0], order[r.id][1]), reverse=True)
                    for v in cands:
                        if room >= g:
                            break
                        if sim[v.team] > nominal[v.team][t]:
                            victims.append(v)
                            sim[v.team] -= v.job.gpus
                            room += v.job.gpus
                    if room >= g:
                        reclaim = (t, "reclaim", victims)
            return reclaim

        while True:
            heads = []
            for team, q in queues.items():
                if team in blocked or not q:
                    continue
                opt = option(q[0])
                borrows = opt is None or opt[1] == "borrow"
                heads.append((borrows, q[0].job.arrival, q[0].id, team, opt))
            if not heads:
                break
            _, _, _, team, opt = min(heads, key=lambda h: h[:3])
            st = queues[team][0]
            if opt is None:
                blocked.add(team)
                continue
            t, _, victims = opt
            for v in victims:
                del placement[v.id]
                del running[v.id]
                usage[v.team][t] -= v.job.gpus
                free[t] += v.job.gpus
            queues[team].pop(0)
            placement[st.id] = t
            free[t] -= st.job.gpus
            usage[team][t] += st.job.gpus
            running[st.id] = st
            order[st.id] = (snap.now, stamp)
            stamp += 1
        return placement
