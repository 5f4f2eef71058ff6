"""Round-based, discrete-event replay of a trace under one policy.

Time is cut into rounds of `round_seconds` on a fixed grid from 0.  At the start of each
round the policy sees a snapshot (capacity, and every job that has arrived and not finished)
and returns a placement: job id -> GPU type.  The engine checks it (gang all-or-nothing is
built in: a placed job holds exactly `gpus` GPUs of one type; no type over capacity), then
runs the round: a job finishing mid-round releases its GPUs, which stay idle until the next
round; a job arriving mid-round waits for the next round.  Rounds where nothing is queued or
running are skipped.  A job that ran before and is now placed after a round off, or on another
type, first pays `restart_seconds` of its GPU time (checkpoint reload).  No randomness: the
same trace, policy and parameters give the same result.

How it stays fast on long traces (15,000 jobs, 200,000 rounds, thousands queued):
- a job running on one type from one round to the next is a *stint*: its finish round and
  finish time are computed once, when the stint starts (restart rounds, then whole rounds of
  `rate x round` steps), and its work, GPU time and steps left are settled only when the
  stint ends (finish, preemption or move).  A round costs O(jobs that start, stop or finish),
  not O(jobs);
- the queue (all of it, and per team) and the running set (and GPUs held per team and type,
  free GPUs per type) are kept incrementally and handed to the policy as read-only views;
- a policy whose placement depends only on the set of jobs and their states (`stable`), or
  that says so once a call changed nothing (`settles`), is not called between events:
  stretches with no arrival and no finish run as one step.
"""

from __future__ import annotations

import heapq
import math
import re
from bisect import bisect_left, insort
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fairshare.errors import UserError
from fairshare.simulate.trace import GAVEL_TYPES, Job, sort_jobs

EPS = 1e-9


class SimulationError(UserError, ValueError):
    """The trace cannot run on the cluster, or a policy returned an impossible placement."""


@dataclass(frozen=True)
class Cluster:
    """GPUs per type, in the order given (the first type is the reference GPU)."""

    gpus: Mapping[str, int]

    @property
    def types(self) -> list[str]:
        return list(self.gpus)

    @property
    def total(self) -> int:
        return sum(self.gpus.values())

    @classmethod
    def parse(cls, spec: str) -> Cluster:
        """`v100=300,p100=300,k80=300` (or `v100:300,...`), or Gavel's `300:300:300` (#v100:#p100:#k80)."""
        text = spec.strip().lower()
        if re.fullmatch(r"\d+(:\d+){0,2}", text):
            counts = [int(v) for v in text.split(":")]
            gpus = dict(zip(GAVEL_TYPES, counts, strict=False))  # "300" or "300:300" name the first types
        else:
            gpus = {}
            for part in text.split(","):
                m = re.fullmatch(r"\s*([a-z0-9][a-z0-9_.\-]*)\s*[=:]\s*(\d+)\s*", part)
                if not m:
                    raise SimulationError(
                        f"cluster {spec!r}: write TYPE=COUNT,... (e.g. v100=300,p100=300,k80=300) "
                        "or Gavel's V100:P100:K80 counts (e.g. 300:300:300)"
                    )
                if m.group(1) in gpus:
                    raise SimulationError(f"cluster {spec!r}: GPU type {m.group(1)!r} given twice")
                gpus[m.group(1)] = int(m.group(2))
        gpus = {t: n for t, n in gpus.items() if n > 0}
        if not gpus:
            raise SimulationError(f"cluster {spec!r} has no GPUs")
        return cls(gpus)

    def describe(self) -> str:
        return ",".join(f"{t}={n}" for t, n in self.gpus.items())


class _Clock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0


class JobState:
    """What a policy may read about one active job.  `seq` is the job's place in arrival order
    (arrival, team, id): every queue is sorted by it.  `order` is the types it can run on,
    fastest first (ties in cluster order).  `remaining` and `gpu_seconds` are as of the start
    of the current round."""

    __slots__ = (
        "job",
        "id",
        "team",
        "gpus",
        "seq",
        "order",
        "placement",
        "ever_ran",
        "started",
        "_rem",
        "_gpu_s",
        "_s0",
        "_over",
        "_rate",
        "_token",
        "_fin",
        "_clock",
        "_round",
    )

    def __init__(self, job: Job, seq: int, order: tuple[str, ...], clock: _Clock, round_seconds: float) -> None:
        self.job, self.id, self.team, self.gpus = job, job.id, job.team, job.gpus
        self.seq, self.order = seq, order
        self.placement: str | None = None  # GPU type held in the previous round (None: queued)
        self.ever_ran = False
        self.started: float | None = None  # first start time
        self._rem = job.work  # steps left at the start of the current stint (or now, if queued)
        self._gpu_s = 0.0  # GPU time received before the current stint
        self._s0 = 0.0  # start of the current stint
        self._over = 0.0  # restart time owed at the start of the current stint
        self._rate = 0.0
        self._token = 0  # bumps when a stint ends, so stale finish events are ignored
        self._fin = 0.0  # when the current stint finishes the job
        self._clock, self._round = clock, round_seconds

    def _elapsed_rounds(self) -> int:
        return round((self._clock.now - self._s0) / self._round)

    @property
    def remaining(self) -> float:
        if self.placement is None:
            return self._rem
        return _rem_after(self._rem, self._over, self._rate, self._round, self._elapsed_rounds())

    @property
    def stint_start(self) -> float | None:
        """When the job started running where it runs now (None: queued)."""
        return self._s0 if self.placement is not None else None

    @property
    def gpu_seconds(self) -> float:
        if self.placement is None:
            return self._gpu_s
        return self._gpu_s + self.gpus * (self._clock.now - self._s0)

    def __repr__(self) -> str:
        return f"JobState({self.id!r}, team={self.team!r}, gpus={self.gpus}, placement={self.placement!r})"


def _rem_after(rem: float, over: float, rate: float, round_seconds: float, rounds: int) -> float:
    """Steps left after `rounds` unfinished rounds of a stint that started with `rem` steps left
    and `over` seconds of restart to pay."""
    while over > 0 and rounds > 0:
        pay = min(over, round_seconds)
        over -= pay
        rem -= rate * (round_seconds - pay)
        rounds -= 1
    return rem - rounds * (rate * round_seconds)


def _stint_end(rem: float, over: float, rate: float, round_seconds: float, tol: float) -> tuple[int, float]:
    """(k, t): the stint's job finishes in its k-th round (from 0), t seconds after that round starts."""
    k = 0
    while over > 0:  # rounds that pay restart time
        pay = min(over, round_seconds)
        over -= pay
        can = rate * (round_seconds - pay)
        if can >= rem - tol:
            return k, pay + rem / rate
        rem -= can
        k += 1
    w = rate * round_seconds
    j = max(0, math.ceil((rem - tol) / w) - 1)
    while j > 0 and w >= rem - (j - 1) * w - tol:
        j -= 1
    while w < rem - j * w - tol:
        j += 1
    return k + j, (rem - j * w) / rate


class Snapshot:
    """The state a policy decides on, at the start of a round.  Every mapping and list here is a
    read-only view of the engine's own state (copy before changing it, e.g. `dict(snap.free)`).

    - `running`: id -> JobState of the jobs placed last round and not finished; `assigned`:
      id -> the type each holds (the placement that keeps every running job where it is);
      `free`: GPUs per type not held by them; `held`: team -> type -> GPUs held;
    - `queue`: the jobs waiting, in arrival order; `team_queue`: the same per team;
      `team_running`: team -> its running jobs in arrival order;
    - `demand`: team -> GPUs its active jobs ask for (sum of gang sizes);
    - `arrived`, `ended`: the jobs that arrived, and those that finished, since the policy's
      previous call (so a policy can keep its own aggregates up to date incrementally);
    - `jobs`: every active job in arrival order (built on first use: O(active jobs))."""

    __slots__ = (
        "now",
        "round_seconds",
        "capacity",
        "teams",
        "changed",
        "last_round_usage",
        "running",
        "assigned",
        "free",
        "held",
        "queue",
        "team_queue",
        "team_running",
        "demand",
        "arrived",
        "ended",
        "_jobs",
    )

    def __init__(
        self,
        now: float,
        round_seconds: float,
        capacity: Mapping[str, int],
        teams: Mapping[str, float],
        changed: bool,
        last_round_usage: Mapping[str, float],
        running: Mapping[str, JobState],
        assigned: Mapping[str, str],
        free: Mapping[str, int],
        held: Mapping[str, Mapping[str, int]],
        queue: Sequence[JobState],
        team_queue: Mapping[str, Sequence[JobState]],
        team_running: Mapping[str, Sequence[JobState]],
        demand: Mapping[str, int],
        arrived: Sequence[JobState] = (),
        ended: Sequence[JobState] = (),
    ) -> None:
        self.now, self.round_seconds, self.capacity, self.teams = now, round_seconds, capacity, teams
        self.changed, self.last_round_usage = changed, last_round_usage
        self.running, self.assigned, self.free, self.held = running, assigned, free, held
        self.queue, self.team_queue, self.team_running, self.demand = queue, team_queue, team_running, demand
        self.arrived, self.ended = arrived, ended
        self._jobs: tuple[JobState, ...] | None = None

    @property
    def jobs(self) -> tuple[JobState, ...]:
        """Every active job (running or queued), in arrival order."""
        if self._jobs is None:
            run = sorted(self.running.values(), key=_seq)
            self._jobs = tuple(heapq.merge(run, self.queue, key=_seq))
        return self._jobs


def _relative_speed(st: JobState) -> float:
    """The job's speed where it runs now over its speed on its fastest type of the cluster."""
    best = st.job.rate(st.order[0])
    return st._rate / best if best > 0 else 1.0


def _seq(st: JobState) -> int:
    return st.seq


class Policy(Protocol):
    name: str
    stable: bool  # True: same job set and states -> same placement, so the engine may reuse it
    # optional `settles: bool`: once a call leaves every job where it was, calls with no arrival
    # or finish in between would do the same (the engine then stops calling until the next event);
    # read after every call, so a policy may settle in some states only

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        """job id -> GPU type for this round; jobs not named are not running."""


@dataclass
class JobRecord:
    id: str
    team: str
    gpus: int
    arrival: float
    start: float | None = None
    finish: float | None = None
    preemptions: int = 0  # lost its GPUs while unfinished
    migrations: int = 0  # moved to another GPU type between consecutive rounds
    gpu_seconds: float = 0.0
    effective_gpu_seconds: float = 0.0  # GPU time x its speed there over the job's speed on its fastest type
    best_seconds: float = 0.0  # run time alone on its fastest type (no queueing, no restarts)

    @property
    def jct(self) -> float:
        assert self.finish is not None
        return self.finish - self.arrival

    @property
    def queued(self) -> float:
        assert self.start is not None
        return self.start - self.arrival


@dataclass
class RoundRecord:
    """One round, or a stretch of identical consecutive rounds (`length` a multiple of the round)."""

    start: float
    length: float  # seconds that count (the last round ends at the last finish)
    gpus: dict[str, int]  # team -> GPUs held
    demand: dict[str, int]  # team -> GPUs its active jobs ask for (sum of gang sizes)
    by_type: dict[str, int]  # GPU type -> GPUs held
    active_jobs: int


@dataclass
class SimResult:
    policy: str
    cluster: Cluster
    round_seconds: float
    restart_seconds: float
    teams: dict[str, float]
    jobs: list[JobRecord]
    rounds: list[RoundRecord] = field(default_factory=list)
    policy_calls: int = 0
    rounds_simulated: int = 0  # rounds in `rounds` may stand for several identical ones
    wall_seconds: float = 0.0
    work_done: dict[str, float] = field(default_factory=dict)  # job id -> steps done (for checks)


def check_fits(jobs: Sequence[Job], cluster: Cluster) -> None:
    """Every job must be able to run somewhere, or no policy could ever finish it."""
    for j in jobs:
        if not any(j.rate(t) > 0 and j.gpus <= n for t, n in cluster.gpus.items()):
            usable = [t for t in cluster.types if j.rate(t) > 0]
            raise SimulationError(
                f"job {j.id} (team {j.team}) needs {j.gpus} GPUs of one type but the cluster "
                + (
                    f"has at most {max(cluster.gpus[t] for t in usable)} of any type it can use"
                    if usable
                    else f"has no type it can run on (it has throughputs for {sorted(j.throughput)})"
                )
                + f"; enlarge --cluster ({cluster.describe()}) or drop the job"
            )


def type_order(job: Job, types: Sequence[str]) -> tuple[str, ...]:
    """Types the job can run on, fastest first, ties in cluster order."""
    usable = [t for t in types if job.rate(t) > 0]
    return tuple(sorted(usable, key=lambda t: (-job.rate(t), types.index(t))))


def simulate(
    jobs: Sequence[Job],
    cluster: Cluster,
    policy: Policy,
    round_seconds: float = 360.0,
    restart_seconds: float = 0.0,
    teams: Mapping[str, float] | None = None,
    on_round: Callable[[float, int], None] | None = None,
    max_rounds: int = 10_000_000,
) -> SimResult:
    """Replay `jobs` under `policy`; `on_round(now, finished)` reports progress."""
    import time

    if round_seconds <= 0:
        raise SimulationError("round length must be positive")
    if restart_seconds < 0:
        raise SimulationError("restart cost must not be negative")
    t_wall = time.perf_counter()
    pending = sort_jobs(jobs)
    if len({j.id for j in pending}) != len(pending):
        raise SimulationError("job ids must be unique")
    check_fits(pending, cluster)
    return _Replay(
        pending, cluster, policy, float(round_seconds), float(restart_seconds), teams, on_round, max_rounds
    ).run(t_wall)


class _Replay:
    def __init__(
        self,
        pending: list[Job],
        cluster: Cluster,
        policy: Policy,
        round_seconds: float,
        restart_seconds: float,
        teams: Mapping[str, float] | None,
        on_round: Callable[[float, int], None] | None,
        max_rounds: int,
    ) -> None:
        self.pending, self.cluster, self.policy = pending, cluster, policy
        self.R, self.restart = round_seconds, restart_seconds
        self.on_round, self.max_rounds = on_round, max_rounds
        weights = dict(teams) if teams else {}
        for j in pending:
            weights.setdefault(j.team, 1.0)
        self.weights = weights
        types = cluster.types
        self.types = types
        self.records = [
            JobRecord(j.id, j.team, j.gpus, j.arrival, best_seconds=j.work / j.best_rate(types)) for j in pending
        ]
        self.result = SimResult(policy.name, cluster, round_seconds, restart_seconds, weights, list(self.records))
        self.clock = _Clock()
        self.orders: dict[tuple, tuple[str, ...]] = {}
        # the state the policy sees
        self.running: dict[str, JobState] = {}
        self.assigned: dict[str, str] = {}
        self.free: dict[str, int] = dict(cluster.gpus)
        self.held: dict[str, dict[str, int]] = {t: dict.fromkeys(types, 0) for t in weights}
        self.held_total: dict[str, int] = dict.fromkeys(weights, 0)
        self.queue: list[JobState] = []
        self.team_queue: dict[str, list[JobState]] = {t: [] for t in weights}
        self.team_running: dict[str, list[JobState]] = {t: [] for t in weights}
        self.demand: dict[str, int] = dict.fromkeys(weights, 0)
        self.n_active = 0
        self.active_by_id: dict[str, JobState] = {}
        self.finishes: list[tuple[float, int, int, JobState]] = []  # (round start, seq, token, state)
        self.usage: dict[str, float] = {}
        self.arrived: list[JobState] = []  # since the previous policy call
        self.ended: list[JobState] = []

    # --- bookkeeping -------------------------------------------------------------------------

    def _order(self, job: Job) -> tuple[str, ...]:
        key = tuple(job.rate(t) for t in self.types)
        got = self.orders.get(key)
        if got is None:
            got = self.orders[key] = type_order(job, self.types)
        return got

    def _enqueue(self, st: JobState) -> None:
        q = self.queue
        if not q or q[-1].seq < st.seq:
            q.append(st)
        else:
            insort(q, st, key=_seq)
        tq = self.team_queue[st.team]
        if not tq or tq[-1].seq < st.seq:
            tq.append(st)
        else:
            insort(tq, st, key=_seq)

    @staticmethod
    def _remove(lst: list[JobState], st: JobState) -> None:
        i = bisect_left(lst, st.seq, key=_seq)
        assert lst[i] is st
        del lst[i]

    def _start_stint(self, st: JobState, gpu_type: str, now: float, over: float) -> None:
        st.placement = gpu_type
        st._s0, st._over = now, over
        st._rate = rate = st.job.rate(gpu_type)
        k, t = _stint_end(st._rem, over, rate, self.R, EPS * max(1.0, st.job.work))
        st._token += 1
        heapq.heappush(self.finishes, (now + k * self.R, st.seq, st._token, st))
        st._fin = now + k * self.R + t
        self.running[st.id] = st
        self.assigned[st.id] = gpu_type
        self.free[gpu_type] -= st.gpus
        self.held[st.team][gpu_type] += st.gpus
        self.held_total[st.team] += st.gpus
        tr = self.team_running[st.team]
        if not tr or tr[-1].seq < st.seq:
            tr.append(st)
        else:
            insort(tr, st, key=_seq)

    def _end_stint(self, st: JobState, now: float) -> None:
        """The job stops at `now` (a round start) unfinished: settle its work and GPU time."""
        rem = _rem_after(st._rem, st._over, st._rate, self.R, round((now - st._s0) / self.R))
        wd = self.result.work_done
        wd[st.id] = wd.get(st.id, 0.0) + (st._rem - rem)
        st._rem = rem
        gs = st.gpus * (now - st._s0)
        st._gpu_s += gs
        self.records[st.seq].gpu_seconds += gs
        self.records[st.seq].effective_gpu_seconds += gs * _relative_speed(st)
        self._release(st)

    def _release(self, st: JobState) -> None:
        t = st.placement
        assert t is not None
        st._token += 1
        del self.running[st.id]
        del self.assigned[st.id]
        self.free[t] += st.gpus
        self.held[st.team][t] -= st.gpus
        self.held_total[st.team] -= st.gpus
        self._remove(self.team_running[st.team], st)

    # --- one replay --------------------------------------------------------------------------

    def run(self, t_wall: float) -> SimResult:
        import time

        pending, R, policy, result = self.pending, self.R, self.policy, self.result
        stable = bool(getattr(policy, "stable", False))
        n_pending = len(pending)
        nxt = 0
        now = 0.0
        changed = True
        settled = False
        finished = 0
        for _ in range(self.max_rounds):
            if not self.n_active:
                if nxt == n_pending:
                    break
                now = max(now, math.ceil(pending[nxt].arrival / R - EPS) * R)
            self.clock.now = now
            while nxt < n_pending and pending[nxt].arrival <= now + EPS:
                j = pending[nxt]
                st = JobState(j, nxt, self._order(j), self.clock, R)
                self.active_by_id[j.id] = st
                self._enqueue(st)
                self.arrived.append(st)
                self.demand[j.team] += j.gpus
                self.n_active += 1
                nxt += 1
                changed = True
            # `settles` is read each round: a policy may settle only in some states (gavel)
            if changed or not (stable or (settled and getattr(policy, "settles", False))):
                snap = Snapshot(
                    now,
                    R,
                    self.cluster.gpus,
                    self.weights,
                    changed,
                    self.usage,
                    self.running,
                    self.assigned,
                    self.free,
                    self.held,
                    self.queue,
                    self.team_queue,
                    self.team_running,
                    self.demand,
                    self.arrived,
                    self.ended,
                )
                self.arrived, self.ended = [], []
                placement = policy.schedule(snap)
                result.policy_calls += 1
                settled = not self._apply(placement, now)
            else:
                # nothing arrives, finishes or moves until the next event: run those rounds at once
                k = self._quiet_rounds(now, pending[nxt].arrival if nxt < n_pending else None)
                if k is None:
                    raise SimulationError(
                        f"{policy.name}: jobs wait forever (nothing runs, nothing arrives); "
                        "a policy that never places some job cannot finish the trace"
                    )
                if k >= 1:
                    self._record(now, k * R, k)
                    self.usage = {t: n * R for t, n in self.held_total.items() if n}
                    result.rounds_simulated += k
                    now += k * R
                    if self.on_round is not None:
                        self.on_round(now, finished)
                    continue
            done = self._run_round(now, nxt < n_pending)
            finished += done
            changed = done > 0
            now += R
            if self.on_round is not None:
                self.on_round(now, finished)
        else:
            raise SimulationError(
                f"{policy.name}: still running after {self.max_rounds:,} rounds; "
                "a policy that never places some job cannot finish the trace"
            )
        result.wall_seconds = time.perf_counter() - t_wall
        return result

    def _quiet_rounds(self, now: float, next_arrival: float | None) -> int | None:
        k = math.inf
        if next_arrival is not None:
            k = math.ceil((next_arrival - now) / self.R - EPS)
        if self.finishes:
            k = min(k, round((self.finishes[0][0] - now) / self.R))
        return None if k == math.inf else max(int(k), 0)

    def _apply(self, placement: Mapping[str, str], now: float) -> bool:
        """Check the policy's placement and start, stop or move jobs.  True if anything changed."""
        assigned = self.assigned
        if placement == assigned:
            return False
        stopped = [self.running[i] for i in assigned.keys() - placement.keys()]
        new = placement.items() - assigned.items()
        by_id = self.active_by_id
        moves: list[tuple[JobState, str]] = []
        used = {t: self.cluster.gpus[t] - n for t, n in self.free.items()}
        for st in stopped:
            used[st.placement] -= st.gpus  # type: ignore[index]
        for jid, gpu_type in new:
            placed = by_id.get(jid)
            if placed is None:
                raise SimulationError(f"policy placed {jid!r}, which is not an active job")
            if gpu_type not in self.cluster.gpus or placed.job.rate(gpu_type) <= 0:
                raise SimulationError(f"policy placed {jid} on {gpu_type!r}, where it cannot run")
            if placed.placement is not None:
                used[placed.placement] -= placed.gpus
            used[gpu_type] += placed.gpus
            moves.append((placed, gpu_type))
        for gpu_type, n in used.items():
            if n > self.cluster.gpus[gpu_type]:
                raise SimulationError(
                    f"policy over-allocated {gpu_type} at t={now:g}: {n} > {self.cluster.gpus[gpu_type]}"
                )
        records = self.records
        for st in sorted(stopped, key=_seq):  # preempted
            self._end_stint(st, now)
            records[st.seq].preemptions += 1
            st.placement = None
            self._enqueue(st)
        for st, gpu_type in sorted(moves, key=lambda m: m[0].seq):
            rec = records[st.seq]
            if st.placement is not None:  # moved to another type
                self._end_stint(st, now)
                rec.migrations += 1
            else:
                self._remove(self.queue, st)
                self._remove(self.team_queue[st.team], st)
            if rec.start is None:
                rec.start = now
                st.started = now
            over = self.restart if st.ever_ran else 0.0
            st.ever_ran = True
            self._start_stint(st, gpu_type, now, over)
        return True

    def _run_round(self, now: float, more_pending: bool) -> int:
        """Run the round starting at `now`: record it, finish the jobs that end in it."""
        R = self.R
        end = now + R
        fin = self.finishes
        done: list[JobState] = []
        while fin and fin[0][0] <= now + 1e-6 * R:
            _, _, token, st = heapq.heappop(fin)
            if token == st._token:
                done.append(st)
        usage = {t: n * R for t, n in self.held_total.items() if n}
        gpus = {t: n for t, n in self.held_total.items() if n}
        demand = {t: n for t, n in self.demand.items() if n}
        by_type = {t: c - self.free[t] for t, c in self.cluster.gpus.items() if c - self.free[t]}
        n_active = self.n_active
        round_end = now
        wd, records = self.result.work_done, self.records
        for st in done:
            t_done = st._fin
            wd[st.id] = wd.get(st.id, 0.0) + st._rem
            st._rem = 0.0
            gs = st.gpus * (t_done - st._s0)
            st._gpu_s += gs
            rec = records[st.seq]
            rec.gpu_seconds += gs
            rec.effective_gpu_seconds += gs * _relative_speed(st)
            rec.finish = t_done
            usage[st.team] -= st.gpus * (end - t_done)
            round_end = max(round_end, t_done)
            self._release(st)
            st.placement = None
            del self.active_by_id[st.id]
            self.ended.append(st)
            self.demand[st.team] -= st.gpus
            self.n_active -= 1
        if self.n_active or more_pending or not done:
            round_end = end
        self.usage = usage
        self._record(now, round_end - now, 1, gpus, demand, by_type, n_active)
        self.result.rounds_simulated += 1
        return len(done)

    def _record(
        self,
        now: float,
        length: float,
        k: int,
        gpus: dict | None = None,
        demand: dict | None = None,
        by_type: dict | None = None,
        n_active: int | None = None,
    ) -> None:
        if gpus is None:
            gpus = {t: n for t, n in self.held_total.items() if n}
            demand = {t: n for t, n in self.demand.items() if n}
            by_type = {t: c - self.free[t] for t, c in self.cluster.gpus.items() if c - self.free[t]}
            n_active = self.n_active
        rounds = self.result.rounds
        if rounds:
            p = rounds[-1]
            if (
                p.active_jobs == n_active
                and abs(p.start + p.length - now) <= 1e-6 * self.R
                and p.gpus == gpus
                and p.demand == demand
                and p.by_type == by_type
            ):
                p.length += length
                return
        rounds.append(RoundRecord(now, length, gpus, demand, by_type, n_active))  # type: ignore[arg-type]
