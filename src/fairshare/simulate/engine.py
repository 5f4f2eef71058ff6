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
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, Sequence

from fairshare.simulate.trace import GAVEL_TYPES, Job, sort_jobs

EPS = 1e-9


class SimulationError(ValueError):
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
    def parse(cls, spec: str) -> "Cluster":
        """`v100=300,p100=300,k80=300` (or `v100:300,...`), or Gavel's `300:300:300` (#v100:#p100:#k80)."""
        text = spec.strip().lower()
        if re.fullmatch(r"\d+(:\d+){0,2}", text):
            counts = [int(v) for v in text.split(":")]
            gpus = dict(zip(GAVEL_TYPES, counts))
        else:
            gpus = {}
            for part in text.split(","):
                m = re.fullmatch(r"\s*([a-z0-9_.\-]+)\s*[=:]\s*(\d+)\s*", part)
                if not m:
                    raise SimulationError(f"cluster {spec!r}: write TYPE=COUNT,... (e.g. v100=300,p100=300,k80=300) "
                                          "or Gavel's V100:P100:K80 counts (e.g. 300:300:300)")
                if m.group(1) in gpus:
                    raise SimulationError(f"cluster {spec!r}: GPU type {m.group(1)!r} given twice")
                gpus[m.group(1)] = int(m.group(2))
        gpus = {t: n for t, n in gpus.items() if n > 0}
        if not gpus:
            raise SimulationError(f"cluster {spec!r} has no GPUs")
        return cls(gpus)

    def describe(self) -> str:
        return ",".join(f"{t}={n}" for t, n in self.gpus.items())


@dataclass
class JobState:
    """What a policy may read about one active job."""

    job: Job
    remaining: float  # steps left
    placement: str | None  # GPU type it held in the previous round (None: queued)
    ever_ran: bool
    gpu_seconds: float  # GPU time received so far
    started: float | None  # first start time

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def team(self) -> str:
        return self.job.team


@dataclass(frozen=True)
class Snapshot:
    now: float
    round_seconds: float
    capacity: Mapping[str, int]
    teams: Mapping[str, float]  # every team of the trace -> weight
    jobs: Sequence[JobState]  # arrived and unfinished, in arrival order
    changed: bool  # a job arrived or finished since the previous round
    last_round_usage: Mapping[str, float] = field(default_factory=dict)  # team -> GPU-seconds used


class Policy(Protocol):
    name: str
    stable: bool  # True: same job set and states -> same placement, so the engine may reuse it

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
    start: float
    length: float  # seconds of this round that count (the last round ends at the last finish)
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
                + (f"has at most {max(cluster.gpus[t] for t in usable)} of any type it can use"
                   if usable else f"has no type it can run on (it has throughputs for {sorted(j.throughput)})")
                + f"; enlarge --cluster ({cluster.describe()}) or drop the job")


def simulate(jobs: Sequence[Job], cluster: Cluster, policy: Policy, round_seconds: float = 360.0,
             restart_seconds: float = 0.0, teams: Mapping[str, float] | None = None,
             on_round: Callable[[float, int], None] | None = None, max_rounds: int = 10_000_000) -> SimResult:
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
    team_weights = dict(teams) if teams else {}
    for j in pending:
        team_weights.setdefault(j.team, 1.0)
    types = cluster.types
    records = {j.id: JobRecord(j.id, j.team, j.gpus, j.arrival,
                               best_seconds=j.work / j.best_rate(types)) for j in pending}
    result = SimResult(policy.name, cluster, round_seconds, restart_seconds, team_weights, list(records.values()))
    active: list[JobState] = []
    overhead: dict[str, float] = {}  # restart seconds still to pay
    nxt = 0  # next job in `pending` to arrive
    now = 0.0
    changed = True
    last: dict[str, str] = {}
    usage: dict[str, float] = {}
    finished = 0
    for _ in range(max_rounds):
        if not active:
            if nxt == len(pending):
                break
            # skip idle rounds: jump to the first round boundary at or after the next arrival
            now = max(now, math.ceil(pending[nxt].arrival / round_seconds - EPS) * round_seconds)
        while nxt < len(pending) and pending[nxt].arrival <= now + EPS:
            j = pending[nxt]
            active.append(JobState(j, j.work, None, False, 0.0, None))
            nxt += 1
            changed = True
        snap = Snapshot(now, round_seconds, cluster.gpus, team_weights, tuple(active), changed, usage)
        if changed or not policy.stable:
            placement = policy.schedule(snap)
            result.policy_calls += 1
            _check(placement, snap, cluster)
        else:
            placement = last
            # nothing changes until the next arrival or finish: run the identical rounds at once
            k = _quiet_rounds(active, placement, overhead, pending[nxt].arrival if nxt < len(pending) else None,
                              now, round_seconds)
            if k >= 1:
                now = _skip(result, records, active, placement, usage, now, k, round_seconds)
                usage = {t: u / k for t, u in usage.items()}  # the last of the k rounds
                if on_round is not None:
                    on_round(now, finished)
                continue
        changed = False
        result.rounds_simulated += 1
        end = now + round_seconds
        held_team: dict[str, int] = {}
        held_type: dict[str, int] = {}
        demand: dict[str, int] = {}
        still: list[JobState] = []
        usage = {}
        round_end = now
        for st in active:
            j, rec = st.job, records[st.id]
            demand[j.team] = demand.get(j.team, 0) + j.gpus
            gpu_type = placement.get(st.id)
            if gpu_type is None:
                if st.placement is not None:
                    rec.preemptions += 1
                st.placement = None
                still.append(st)
                continue
            held_team[j.team] = held_team.get(j.team, 0) + j.gpus
            held_type[gpu_type] = held_type.get(gpu_type, 0) + j.gpus
            if st.ever_ran and st.placement != gpu_type:
                overhead[st.id] = restart_seconds
                if st.placement is not None:
                    rec.migrations += 1
            if rec.start is None:
                rec.start = now
                st.started = now
            st.ever_ran = True
            st.placement = gpu_type
            pay = min(overhead.get(st.id, 0.0), round_seconds)
            overhead[st.id] = overhead.get(st.id, 0.0) - pay
            rate = j.rate(gpu_type)
            can_do = rate * (round_seconds - pay)
            if can_do >= st.remaining - EPS * max(1.0, j.work):
                t_done = now + pay + st.remaining / rate
                result.work_done[st.id] = result.work_done.get(st.id, 0.0) + st.remaining
                st.gpu_seconds += j.gpus * (t_done - now)
                rec.gpu_seconds += j.gpus * (t_done - now)
                usage[j.team] = usage.get(j.team, 0.0) + j.gpus * (t_done - now)
                st.remaining = 0.0
                rec.finish = t_done
                round_end = max(round_end, t_done)
                finished += 1
                changed = True
                overhead.pop(st.id, None)
            else:
                st.remaining -= can_do
                result.work_done[st.id] = result.work_done.get(st.id, 0.0) + can_do
                st.gpu_seconds += j.gpus * round_seconds
                rec.gpu_seconds += j.gpus * round_seconds
                usage[j.team] = usage.get(j.team, 0.0) + j.gpus * round_seconds
                round_end = end
                still.append(st)
        if still or nxt < len(pending):
            round_end = end
        result.rounds.append(RoundRecord(now, round_end - now, held_team, demand, held_type, len(active)))
        active = still
        last = {st.id: st.placement for st in active if st.placement is not None}
        now = end
        if on_round is not None:
            on_round(now, finished)
    else:
        raise SimulationError(f"{policy.name}: still running after {max_rounds:,} rounds; "
                              "a policy that never places some job cannot finish the trace")
    result.wall_seconds = time.perf_counter() - t_wall
    return result


def _quiet_rounds(active: Sequence[JobState], placement: Mapping[str, str], overhead: Mapping[str, float],
                  next_arrival: float | None, now: float, round_seconds: float) -> int:
    """How many whole rounds from `now` pass with no arrival, no finish and no restart."""
    k = math.inf
    if next_arrival is not None:
        k = math.ceil((next_arrival - now) / round_seconds - EPS)
    for st in active:
        t = placement.get(st.id)
        if t is None:
            continue
        if overhead.get(st.id, 0.0) > 0 or st.placement != t:
            return 0
        per_round = st.job.rate(t) * round_seconds
        k = min(k, math.floor((st.remaining - EPS * max(1.0, st.job.work)) / per_round))
    return 0 if k == math.inf else max(int(k), 0)


def _skip(result: SimResult, records: dict[str, JobRecord], active: Sequence[JobState],
          placement: Mapping[str, str], usage: dict[str, float], now: float, k: int, round_seconds: float) -> float:
    """Advance k identical rounds in one step (one RoundRecord of k rounds' length)."""
    span = k * round_seconds
    held_team: dict[str, int] = {}
    held_type: dict[str, int] = {}
    demand: dict[str, int] = {}
    usage.clear()
    for st in active:
        j = st.job
        demand[j.team] = demand.get(j.team, 0) + j.gpus
        t = placement.get(st.id)
        if t is None:
            continue
        held_team[j.team] = held_team.get(j.team, 0) + j.gpus
        held_type[t] = held_type.get(t, 0) + j.gpus
        done = j.rate(t) * span
        st.remaining -= done
        result.work_done[st.id] = result.work_done.get(st.id, 0.0) + done
        st.gpu_seconds += j.gpus * span
        records[st.id].gpu_seconds += j.gpus * span
        usage[j.team] = usage.get(j.team, 0.0) + j.gpus * span
    result.rounds.append(RoundRecord(now, span, held_team, demand, held_type, len(active)))
    result.rounds_simulated += k
    return now + span


def _check(placement: Mapping[str, str], snap: Snapshot, cluster: Cluster) -> None:
    by_id = {st.id: st for st in snap.jobs}
    used: dict[str, int] = {}
    for jid, gpu_type in placement.items():
        st = by_id.get(jid)
        if st is None:
            raise SimulationError(f"policy placed {jid!r}, which is not an active job")
        if gpu_type not in cluster.gpus or st.job.rate(gpu_type) <= 0:
            raise SimulationError(f"policy placed {jid} on {gpu_type!r}, where it cannot run")
        used[gpu_type] = used.get(gpu_type, 0) + st.job.gpus
    for gpu_type, n in used.items():
        if n > cluster.gpus[gpu_type]:
            raise SimulationError(f"policy over-allocated {gpu_type} at t={snap.now:g}: {n} > {cluster.gpus[gpu_type]}")
