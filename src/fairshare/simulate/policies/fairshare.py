"""fairshare: the engine's hierarchical weighted max-min across teams, then a within-team order.

Whenever the set of jobs changes, the engine solves one problem: a pool per GPU type, the teams
as children of the root with their weights, and each team's demand as requests (one per kind of
job, i.e. per speed profile, asking for the sum of its queued and running gang sizes; speeds
relative to the cluster's first type).  The engine's fast path (`fairshare.engine.shares`, the
same numbers as `allocate`) gives every team its share of every type (exact, fractional).  With
`unit="gpus"` (the default) a team's total is the weighted max-min of GPU counts (the metrics'
fair share: the engine's effective totals swing between equally good placements, and gangs
moved with them) and the engine's shares per type only say where its gangs go first; with
`unit="effective"` the total is the engine's.  Shares become gangs in two passes:

1. within shares: the team furthest below its share (GPUs placed / GPUs of share) places its
   next job in FIFO order when the team's share has room for the whole gang (to the nearest
   GPU): with `fit="total"` (the default) room in the team's GPUs of all types, the gang going
   to the preferred type (its current type, then the fastest) where the team's share of that
   type has room, else to the preferred type with idle GPUs; with `fit="type"` only where the
   team's share of that type has room (the engine's exact placement, but a gang larger than a
   team's share of any one type then never fits: on a loaded cluster the teams with large gangs
   fell to 0.74 of their share).  A job that fits no share is passed over for now (the team's
   later jobs may still fit: backfill within the share);
2. work conserving: the jobs still waiting, the team furthest below its share first, take any
   idle GPUs that fit their gang.

Running jobs come first in FIFO order, so a job keeps its GPUs unless its team's share
shrinks (another team's demand arrives): that is when fairshare preempts.

Hysteresis (fewer preemptions): `wait_margin` (the waiting team's margin, default 0.2; None: off)
keeps every running gang until a team with waiting jobs holds less than (1 - wait_margin) of its
share, and then takes for that team only the GPUs its jobs need (`_make_room`), from the teams
furthest over theirs (their youngest gangs first), never taking a team below (1 - wait_margin)
of its share, and drains a type for a gang no eviction can place.  Gangs kept on a slower type
move up when a faster one is idle (a migration, not a preemption).  With it off: `margin` keeps
a team's gangs while it holds at most its share x (1 + margin); `min_run_hours` protects young
gangs.

Calls: after an arrival or an ending the simulator calls again every round until a call moves
nothing (`settles`), then skips the quiet rounds up to the next event.

Speed: the demand per (team, kind of job) is kept up to date from the jobs that arrived and
ended since the previous call, and the engine's answer is memoised on it (the same demand
gives the same shares).  With GPU totals and fit by total (the defaults) the engine's shares
per type only choose between types that both have room for a gang, so the engine is asked on
the first such choice of a call, not on every call (the same placements: most calls start no
gang, or one where a single type has room).  The two passes walk a team's jobs only while its share (pass 1) or
the cluster (pass 2) still has room for a gang."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from fairshare.engine.shares import TeamShares
from fairshare.simulate.engine import JobState, Snapshot
from fairshare.simulate.metrics import water_fill
from fairshare.simulate.policies._common import prefer

ROUNDING = 0.5  # a gang may exceed its team's exact share on a type by less than half a GPU
WAIT_MARGIN = 0.2  # default: gangs move only for a team below 80% of its share (the loaded Philly replay's
# worst team at 0.97 of its share with 0.40 preemptions per job; docs/simulate.md)


class Fairshare:
    name = "fairshare"
    # Not `stable`: a job's preferred type is where it runs now, so the first call after an event
    # can place a gang that the next call, seeing it there, moves (a migration in a quiet round).
    # But the placement is a function of the job set and where each job runs, so once a call
    # moves nothing, the next ones would not either: the simulator may skip until an event.
    stable = False

    def __init__(
        self,
        order: str = "fifo",
        margin: float | None = None,
        min_run_hours: float = 0.0,
        fit: str = "total",
        wait_margin: float | None = WAIT_MARGIN,
        unit: str = "gpus",
    ) -> None:
        if order not in ("fifo",):
            raise ValueError("within-team order must be 'fifo'")
        if margin is not None and not 0 <= margin < math.inf:
            raise ValueError("margin must be a non-negative number (a fraction of the team's share)")
        if not 0 <= min_run_hours < math.inf:
            raise ValueError("min_run_hours must be a non-negative number")
        if fit not in ("type", "total"):
            raise ValueError("fit must be 'type' or 'total'")
        if wait_margin is not None and not 0 <= wait_margin <= 1:
            raise ValueError("wait_margin must be between 0 and 1 (a fraction of the team's share)")
        if unit not in ("effective", "gpus"):
            raise ValueError("unit must be 'effective' or 'gpus'")
        self.order = order
        self.fit = fit
        self.unit = unit
        self.wait_margin = wait_margin
        self.margin = margin
        self.min_run = min_run_hours * 3600.0
        # a minimum run time protects a gang for a while after it starts, which changes with no
        # event: then the policy is called every round (its engine answers are memoised)
        self.settles = self.min_run == 0
        self._groups: dict[tuple, int] = {}  # (team, speed profile) -> GPUs asked by its active jobs
        self._speed: dict[tuple, tuple] = {}  # rates on the cluster's types -> speed profile
        self._engine: TeamShares | None = None  # the engine for this cluster and teams
        self._reserved: tuple[JobState, str] | None = None  # a gang a type is drained for (wait_margin)

    def _profile(self, st: JobState, types: list[str]) -> tuple:
        job = st.job
        rates = tuple(job.rate(t) for t in types)
        got = self._speed.get(rates)
        if got is None:
            base = rates[0] or max(rates)
            got = self._speed[rates] = tuple(
                (t, round(r / base, 9)) for t, r in zip(types, rates, strict=True) if r > 0
            )
        return got

    def _update(self, snap: Snapshot) -> None:
        types = list(snap.capacity)
        groups = self._groups
        for st in snap.arrived:
            key = (st.team, self._profile(st, types))
            groups[key] = groups.get(key, 0) + st.gpus
        for st in snap.ended:
            key = (st.team, self._profile(st, types))
            left = groups[key] - st.gpus
            if left:
                groups[key] = left
            else:
                del groups[key]

    def shares(self, snap: Snapshot) -> dict[str, dict[str, float]]:
        """team -> GPU type -> GPUs (exact) from the engine's fast path (engine/shares.py)."""
        self._update(snap)
        return self._shares(snap)

    def _shares(self, snap: Snapshot) -> dict[str, dict[str, float]]:
        """`shares` for the demand `_update` last saw."""
        if self._engine is None:
            self._engine = TeamShares(snap.capacity, snap.teams)
        return self._engine(tuple(self._groups.items()))

    @property
    def solves(self) -> int:
        return self._engine.solves if self._engine else 0

    @property
    def memo_hits(self) -> int:
        return self._engine.memo_hits if self._engine else 0

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        self._update(snap)
        if not snap.running and not snap.queue:
            return {}
        types = list(snap.capacity)
        free = dict(snap.capacity)
        teams = snap.teams
        used = {team: dict.fromkeys(types, 0) for team in teams}
        by_total = self.fit == "total"
        # the engine's shares per type; with GPU totals and fit by total they only choose between
        # two types that both have room for a gang, so they are solved on the first such choice
        # (a call that starts no gang, or only where one type has room, needs no solve)
        limits: dict[str, dict[str, int]] = {}

        def limit_of(team: str) -> dict[str, int]:
            if not limits:  # a gang of g fits team's share on t iff used + g <= share + ROUNDING
                share = self._shares(snap)
                limits.update({tm: {t: math.floor(s[t] + ROUNDING) for t in types} for tm, s in share.items()})
            return limits[team]

        if self.unit == "gpus":  # each team's GPUs in total: max-min of GPU counts, as the metrics count them
            total_share = water_fill({t: float(n) for t, n in snap.demand.items()}, dict(teams), sum(free.values()))
        else:
            total_share = {team: sum(s.values()) for team, s in self._shares(snap).items()}
        total_limit = {team: math.floor(s + ROUNDING) for team, s in total_share.items()}
        placed_gpus = dict.fromkeys(teams, 0)
        placement: dict[str, str] = {}

        def behind(team: str) -> tuple[float, str]:
            s = total_share[team]
            return (placed_gpus[team] / s if s > 0 else float("inf"), team)

        # a team's jobs in its order: running first, then queued, each in arrival order
        lists = {
            team: (snap.team_running[team], snap.team_queue[team])
            for team in teams
            if snap.team_running[team] or snap.team_queue[team]
        }
        waiting: dict[str, list[tuple[Sequence[JobState], int, int]]] = {team: [] for team in lists}
        keep_all = self.wait_margin is not None
        if keep_all:
            for team in lists:  # every gang stays, unless a team far below its share needs its GPUs
                placed_gpus[team] = self._protect(snap, team, math.inf, free, used[team], placement)
            self._make_room(snap, total_share, total_limit, free, used, placed_gpus, placement)
        elif self.margin is not None or self.min_run > 0:
            for team in lists:
                cap = total_share[team] * (1.0 + self.margin) + ROUNDING if self.margin is not None else -1.0
                placed_gpus[team] = self._protect(snap, team, cap, free, used[team], placement)
        heap = [(behind(team), team, 0, 0) for team in lists]
        heapq.heapify(heap)
        # pass 1: the team furthest below its share places its next job that fits its share
        while heap:
            _, team, part, i = heapq.heappop(heap)
            seqs, mine = lists[team], used[team]
            while True:  # the same team again while it is still the furthest below (it would be popped next)
                placed = False
                while part < 2:
                    jobs = seqs[part]
                    n = len(jobs)
                    if by_total:  # the largest gang the team's share and one type's idle GPUs allow
                        room = min(max(free.values()), total_limit[team] - placed_gpus[team])
                    else:
                        lim = limit_of(team)
                        room = 0
                        for t in types:
                            r = lim[t] - mine[t]
                            f = free[t]
                            if f < r:
                                r = f
                            if r > room:
                                room = r
                    start = i
                    while i < n:
                        if room < 1:  # nothing of this team fits any more: the rest waits
                            i = n
                            break
                        st = jobs[i]
                        g = st.gpus
                        i += 1
                        if g > room or st.id in placement:  # too big, or kept where it runs (_protect)
                            continue
                        fits = [t for t in prefer(st, st.placement) if free[t] >= g]
                        if not fits:
                            continue
                        chosen = fits[0] if by_total else None  # fit by total: the preferred type with room,
                        if len(fits) > 1 or not by_total:  # unless the team's share of another one has room first
                            lim = limit_of(team)
                            chosen = next((t for t in fits if mine[t] + g <= lim[t]), chosen)
                        if chosen is None:
                            continue
                        if i - 1 > start:
                            waiting[team].append((jobs, start, i - 1))
                        placement[st.id] = chosen
                        free[chosen] -= g
                        mine[chosen] += g
                        placed_gpus[team] += g
                        placed = True
                        break
                    if placed:
                        break
                    if i > start:
                        waiting[team].append((jobs, start, i))
                    part, i = part + 1, 0
                if not placed:
                    break
                entry = (behind(team), team, part, i)
                if heap and heap[0] < entry:
                    heapq.heappush(heap, entry)
                    break
        # pass 2 (work conserving): teams furthest below their share first take any idle GPUs
        _fill_idle(sorted(waiting, key=behind), waiting, free, placement)
        if keep_all:
            _move_up(snap, free, placement)
        return placement

    def _protect(
        self, snap: Snapshot, team: str, cap: float, free: dict[str, int], mine: dict[str, int], placement: dict
    ) -> int:
        """Hysteresis: keep a team's running gangs where they run, in arrival order, while they
        hold at most `cap` GPUs (its share x (1 + margin); infinite: every gang), and every gang
        that started less than the minimum run time ago.  Returns the GPUs kept; the rest of the
        team's jobs are placed as usual, within what is left of its share."""
        kept = 0
        for st in snap.team_running[team]:
            t, g = st.placement, st.gpus
            young = self.min_run > 0 and st.stint_start is not None and snap.now - st.stint_start < self.min_run
            # a finite cap keeps a gang on its fastest type only: one on a slower type may still move up
            if t is None or not (young or cap == math.inf or (kept + g <= cap and t == st.order[0])):
                continue
            placement[st.id] = t
            free[t] -= g
            mine[t] += g
            kept += g
        return kept

    def _make_room(
        self,
        snap: Snapshot,
        share: dict[str, float],
        limit: dict[str, int],
        free: dict[str, int],
        used: dict[str, dict[str, int]],
        placed: dict[str, int],
        placement: dict[str, str],
    ) -> None:
        """The waiting team's margin: a team with waiting jobs that holds less than (1 -
        wait_margin) of its share (a starved team, the furthest below first) starts its waiting
        jobs in FIFO order until it holds its share, on idle GPUs or on GPUs taken from gangs of
        teams over their share (the team furthest over first, its youngest gang first), never
        taking a team below (1 - wait_margin) of its share.  When no type can make room for a
        gang, one type is drained for it: nobody else starts there until it does.  Nobody else
        is moved."""
        floor = 1.0 - (self.wait_margin or 0.0)
        starved = [
            team
            for team, queue in snap.team_queue.items()
            if queue and placed.get(team, 0) < floor * share.get(team, 0.0) - 1e-9
        ]
        if not starved:
            return
        starved.sort(key=lambda team: (placed[team] / share[team], team))
        if self._reserved is not None:  # a type drained for one gang: it starts first, or nobody does
            st, t = self._reserved
            if st.id in snap.running or st.remaining <= 0 or st.team not in starved or st.id in placement:
                self._reserved = None
            elif free[t] >= st.gpus:
                self._reserved = None
                _start(st, t, free, used, placed, placement)
            else:
                free[t] = 0
        on_type: dict[str, list[JobState]] | None = None
        blocked: JobState | None = None
        for team in starved:
            queue = snap.team_queue[team]
            for st in queue:
                if placed[team] >= limit[team]:
                    break
                # a gang may take its team up to (1 + margin) x its share; beyond that only a
                # gang no larger than the share, the team's oldest waiting gang, or any gang of a
                # team holding nothing (else a gang larger than what the share lacks would keep
                # its team below the margin for good)
                g = st.gpus
                room = math.floor(share[team] * (2.0 - floor) + ROUNDING) - placed[team]
                if placed[team] == 0 or g <= share[team] + ROUNDING or st is queue[0]:
                    room = max(room, g)
                if g > room or st.id in placement:
                    continue
                chosen = next((t for t in st.order if free[t] >= g), None)
                if chosen is None:
                    if on_type is None:
                        on_type = {gpu_type: [] for gpu_type in free}
                        for run in snap.running.values():
                            where = placement.get(run.id)
                            if where is not None:
                                on_type[where].append(run)
                    chosen = _evict(st, on_type, share, 1.0 - floor, free, used, placed, placement)
                    if chosen is None:
                        blocked = blocked or st
                        continue
                _start(st, chosen, free, used, placed, placement)
        if blocked is not None and self._reserved is None:
            # drain: the type where the most starved team's first blocked gang has the most room
            # goes to nobody else until that gang starts (else a large gang can wait for good)
            fits = [t for t in blocked.order if snap.capacity[t] >= blocked.gpus]
            t = max(fits, key=lambda t: free[t])
            self._reserved = (blocked, t)
            free[t] = 0


def _start(
    st: JobState,
    t: str,
    free: dict[str, int],
    used: dict[str, dict[str, int]],
    placed: dict[str, int],
    placement: dict[str, str],
) -> None:
    """`st` runs on type `t` this round (what `_evict` undoes for its victims)."""
    placement[st.id] = t
    free[t] -= st.gpus
    used[st.team][t] += st.gpus
    placed[st.team] += st.gpus


def _evict(
    st: JobState,
    on_type: dict[str, list[JobState]],
    share: dict[str, float],
    margin: float,
    free: dict[str, int],
    used: dict[str, dict[str, int]],
    placed: dict[str, int],
    placement: dict[str, str],
) -> str | None:
    """Free room for `st` on the fastest type where gangs of teams over their share can give it
    (keeping each of those teams within the margin of its share); returns that type, or None."""
    g = st.gpus
    for t in st.order:
        victims, freed = [], free[t]
        over = {team: placed[team] - share[team] for team in placed}
        cands = sorted(
            (v for v in on_type[t] if v.id in placement and over[v.team] > 0),
            key=lambda v: (-over[v.team] / max(share[v.team], 1e-9), -(v.stint_start or 0.0), -v.seq),
        )
        for v in cands:
            if freed >= g:
                break
            # never below (1 - margin) x its share: a victim taken below that would be starved in
            # turn and take the GPUs back (gangs moving to and fro every round)
            if over[v.team] - v.gpus < -margin * share[v.team]:
                continue
            victims.append(v)
            over[v.team] -= v.gpus
            freed += v.gpus
        if freed < g:
            continue
        for v in victims:
            del placement[v.id]
            free[t] += v.gpus
            used[v.team][t] -= v.gpus
            placed[v.team] -= v.gpus
        return t
    return None


def _move_up(snap: Snapshot, free: dict[str, int], placement: dict[str, str]) -> None:
    """Gangs kept on a slower type move to a faster one that is still idle (a migration, not a
    preemption: the job keeps running)."""
    if max(free.values()) < 1:  # nothing idle: nobody can move (a move only frees a slower type)
        return
    slower = [st for st in snap.running.values() if placement.get(st.id) not in (None, st.order[0])]
    for st in sorted(slower, key=lambda s: s.seq):
        t = placement[st.id]
        g = st.gpus
        for u in st.order:
            if u == t:
                break
            if free[u] >= g:
                placement[st.id] = u
                free[u] -= g
                free[t] += g
                break


def _fill_idle(
    order: list[str],
    waiting: dict[str, list[tuple[Sequence[JobState], int, int]]],
    free: dict[str, int],
    placement: dict[str, str],
) -> None:
    for team in order:
        for jobs, a, b in waiting[team]:
            for k in range(a, b):
                biggest = max(free.values())
                if biggest < 1:
                    return
                st = jobs[k]
                g = st.gpus
                if g > biggest or st.id in placement:
                    continue
                for t in prefer(st, st.placement):
                    if free[t] >= g:
                        placement[st.id] = t
                        free[t] -= g
                        break
