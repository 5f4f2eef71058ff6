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
split of every type, as for static quotas.

A cycle that admits nothing leaves the state as it found it, so the next one would admit nothing
either until a job arrives or finishes (`settles`): the engine then stops calling until then."""

from __future__ import annotations

from fairshare.simulate.engine import JobState, Snapshot
from fairshare.simulate.policies._common import keep_running, split_quota

_NEW = 1 << 62  # admissions of this round rank after every running job of the same start time


class Kueue:
    name = "kueue"
    stable = False
    settles = True  # a cycle that admits nothing would admit nothing again until a job arrives or ends

    def __init__(self) -> None:
        self.nominal: dict[str, dict[str, int]] | None = None

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        if self.nominal is None:
            self.nominal = split_quota(snap.capacity, snap.teams)
        nominal = self.nominal
        types = list(snap.capacity)
        placement, free = keep_running(snap)
        if not snap.queue:
            return placement
        usage = {team: dict(h) for team, h in snap.held.items()}
        running: dict[str, JobState] = dict(snap.running)
        admitted: dict[str, tuple[float, int]] = {}  # admission recency of this round's admissions

        def recency(r: JobState) -> tuple[float, int]:
            got = admitted.get(r.id)
            return got if got is not None else (r.started if r.started is not None else snap.now, r.seq)

        cursor = {team: 0 for team, q in snap.team_queue.items() if q}
        blocked: set[str] = set()
        stamp = _NEW

        def option(st: JobState):
            job, team, g = st.job, st.team, st.gpus
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
                    cands = sorted(
                        (r for r in running.values() if placement[r.id] == t and r.team != team),
                        key=recency,
                        reverse=True,
                    )
                    for v in cands:
                        if room >= g:
                            break
                        if sim[v.team] > nominal[v.team][t]:
                            victims.append(v)
                            sim[v.team] -= v.gpus
                            room += v.gpus
                    if room >= g:
                        reclaim = (t, "reclaim", victims)
            return reclaim

        while True:
            heads = []
            for team, i in cursor.items():
                q = snap.team_queue[team]
                if team in blocked or i >= len(q):
                    continue
                opt = option(q[i])
                borrows = opt is None or opt[1] == "borrow"
                heads.append((borrows, q[i].job.arrival, q[i].id, team, opt))
            if not heads:
                break
            _, _, _, team, opt = min(heads, key=lambda h: h[:3])
            st = snap.team_queue[team][cursor[team]]
            if opt is None:
                blocked.add(team)
                continue
            t, _, victims = opt
            for v in victims:
                del placement[v.id]
                del running[v.id]
                usage[v.team][t] -= v.gpus
                free[t] += v.gpus
            cursor[team] += 1
            placement[st.id] = t
            free[t] -= st.gpus
            usage[team][t] += st.gpus
            running[st.id] = st
            admitted[st.id] = (snap.now, stamp)
            stamp += 1
        return placement
