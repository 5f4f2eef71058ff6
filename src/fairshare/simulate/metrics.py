"""What a replay did: the numbers a committee compares across policies.

- Job completion time (JCT = finish - arrival): mean and p95; makespan (first arrival to last
  finish); utilisation (GPU-seconds held by jobs / (GPUs x makespan)); queueing delay (first
  start - arrival), p95 and max (starvation); preemptions (also per hour of jobs running, so
  traces of different lengths compare) and moves between GPU types.
- Teams over time: in every round, each team's *fair share* is the weighted max-min split of
  the cluster's GPUs among the teams with demand, capped by their demand (sum of their active
  jobs' gang sizes).  `share_ratio` = GPUs received / fair share, summed over the rounds in
  which the team had demand; Jain's index over teams' received/fair ratios in each round,
  averaged over time.
- Teams over the committee's rounds: the replay cut into health periods (`--health-period-days`,
  default 30, one allocation round of a committee), each team's demand, fair share and GPUs received
  averaged over each; starved, the longest starved streak and the debt by `fairshare health`'s
  definitions (`fairshare.engine.health`), in GPUs rather than effective GPUs.
- Themis finish-time fairness: rho = JCT in the shared cluster / JCT on a private 1/N of the
  cluster, N the time-averaged number of active jobs over the job's life.  On the private
  slice (total GPUs / N) the job runs on its fastest type, slowed by gpus / slice when its
  gang is larger than the slice.  rho > 1: the job would have done better alone on 1/N.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from fairshare.engine import jain_index
from fairshare.engine.health import HealthRules, decayed_debt, share_of_fair, streaks
from fairshare.simulate.engine import SimResult

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass
class TeamMetrics:
    team: str
    weight: float
    jobs: int
    avg_jct_h: float
    gpu_hours: float  # received
    fair_gpu_hours: float  # fair share, over the rounds it had demand
    share_ratio: float  # received / fair share while it had demand (1 = exactly its share)
    starved_periods: int = 0  # health periods in which it was starved (docs/health.md)
    longest_starved_streak: int = 0  # the longest run of consecutive starved periods
    debt: float = 0.0  # GPUs: fair share - received per period, halved every half-life, as of the last
    effective_share_ratio: float = 1.0  # as share_ratio, each GPU-hour weighted by the job's speed there / its best


@dataclass
class PolicyMetrics:
    policy: str
    jobs: int
    avg_jct_h: float
    p95_jct_h: float
    makespan_h: float
    utilisation: float
    queue_p95_h: float
    queue_max_h: float
    preemptions: int
    migrations: int
    jain: float  # time-averaged Jain's index across teams of received / fair share
    min_share_ratio: float  # the worst-served team's share_ratio
    rho_max: float
    rho_above_1: float  # share of jobs with rho > 1
    wall_seconds: float
    rounds: int
    policy_calls: int
    teams: list[TeamMetrics] = field(default_factory=list)
    preemptions_per_job_hour: float = 0.0  # preemptions / hours jobs spent running (their GPU time / gang size)
    longest_starved_streak: int = 0  # the worst team's longest run of starved health periods
    min_effective_share_ratio: float = 1.0  # the worst-served team's effective_share_ratio

    def row(self) -> dict[str, float | int | str]:
        """The flat record (no team breakdown) for CSV and tables."""
        d = asdict(self)
        d.pop("teams")
        return d


def water_fill(demand: dict[str, float], weights: dict[str, float], capacity: float) -> dict[str, float]:
    """Weighted max-min split of `capacity` among `demand`, none above its demand."""
    share = dict.fromkeys(demand, 0.0)
    left = {t for t, d in demand.items() if d > 0}
    cap = float(capacity)
    while left and cap > 1e-12:
        w = sum(weights[t] for t in left)
        level = cap / w
        sated = {t for t in left if demand[t] - share[t] <= level * weights[t] + 1e-12}
        if not sated:
            for t in left:
                share[t] += level * weights[t]
            break
        for t in sated:
            cap -= demand[t] - share[t]
            share[t] = demand[t]
        left -= sated
    return share


def timeline(res: SimResult) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(round starts, teams, GPUs received [round, team], fair share [round, team])."""
    teams = sorted(res.teams)
    n = len(res.rounds)
    got = np.zeros((n, len(teams)))
    fair = np.zeros((n, len(teams)))
    total = res.cluster.total
    for i, r in enumerate(res.rounds):
        fs = water_fill({t: float(r.demand.get(t, 0)) for t in teams}, res.teams, total)
        for k, t in enumerate(teams):
            got[i, k] = r.gpus.get(t, 0)
            fair[i, k] = fs[t]
    return np.array([r.start for r in res.rounds]), teams, got, fair


@dataclass
class Periods:
    """Each team's demand, fair share and GPUs received, averaged over consecutive spans of time."""

    starts: np.ndarray  # seconds from the first round
    seconds: float  # each span's length (the last may be cut short by the end of the replay)
    teams: list[str]
    demand: np.ndarray  # [span, team] average GPUs asked for
    fair: np.ndarray  # [span, team] average fair share
    got: np.ndarray  # [span, team] average GPUs received


def periods(res: SimResult, seconds: float) -> Periods:
    """The replay cut into spans of `seconds` from its first round; rounds that straddle a boundary
    count by their part on each side, skipped idle stretches as nothing asked or received."""
    starts, teams, got, fair = timeline(res)
    demand = np.array([[r.demand.get(t, 0) for t in teams] for r in res.rounds], dtype=float).reshape(got.shape)
    if not len(starts):
        empty = np.zeros((0, len(teams)))
        return Periods(np.zeros(0), seconds, teams, empty, empty, empty)
    lengths = np.array([r.length for r in res.rounds])
    t0, end = float(starts[0]), float((starts + lengths).max())
    edges = t0 + seconds * np.arange(int(np.ceil((end - t0) / seconds - 1e-9)) + 1)
    edges[-1] = max(edges[-1], end)
    span = np.diff(np.minimum(edges, end))

    def averaged(values: np.ndarray) -> np.ndarray:
        cum = np.vstack([np.zeros(values.shape[1]), np.cumsum(values * lengths[:, None], axis=0)])
        k = np.clip(np.searchsorted(starts, edges, side="right") - 1, 0, None)
        partial = np.clip(edges - starts[k], 0.0, lengths[k])[:, None] * values[k]
        return np.diff(cum[k] + partial, axis=0) / np.where(span > 0, span, 1.0)[:, None]

    return Periods(edges[:-1] - t0, seconds, teams, averaged(demand), averaged(fair), averaged(got))


def team_health(p: Periods, rules: HealthRules | None = None) -> dict[str, tuple[int, int, float]]:
    """Per team (starved periods, longest starved streak, debt as of the last period), each period
    read as one round of `fairshare health`."""
    rules = rules or HealthRules()
    n = len(p.starts)
    out = {}
    for k, team in enumerate(p.teams):
        starved = [
            rules.starved(share_of_fair(p.got[i, k], p.fair[i, k], p.demand[i, k]), p.demand[i, k], p.got[i, k])
            for i in range(n)
        ]
        _, longest = streaks(starved)
        debt = decayed_debt(list(p.fair[:, k] - p.got[:, k]), [n - 1 - i for i in range(n)], rules.half_life_rounds)
        out[team] = (int(sum(starved)), longest, round(float(debt), 6))
    return out


def _active_integral(res: SimResult):
    starts = np.array([r.start for r in res.rounds])
    lengths = np.array([r.length for r in res.rounds])
    vals = np.array([r.active_jobs for r in res.rounds], dtype=float)
    cum = np.concatenate([[0.0], np.cumsum(vals * lengths)])

    def integral(t: float) -> float:
        k = int(np.searchsorted(starts, t, side="right")) - 1
        if k < 0:
            return 0.0
        return float(cum[k] + vals[k] * min(max(t - starts[k], 0.0), lengths[k]))

    return integral


def rho(res: SimResult) -> np.ndarray:
    """Themis finish-time fairness of every job, in job order."""
    integral = _active_integral(res)
    total = res.cluster.total
    out = []
    for j in res.jobs:
        assert j.finish is not None
        life = j.finish - j.arrival
        n_avg = max((integral(j.finish) - integral(j.arrival)) / life, 1.0) if life > 0 else 1.0
        ideal = j.best_seconds * max(1.0, j.gpus * n_avg / total)
        out.append(life / ideal if ideal > 0 else 1.0)
    return np.array(out)


def compute(res: SimResult, health_period_days: float = 30.0, rules: HealthRules | None = None) -> PolicyMetrics:
    """The replay's metrics; teams' starved streaks and debt over periods of `health_period_days`."""
    unfinished = [j.id for j in res.jobs if j.finish is None]
    if unfinished:
        raise ValueError(f"{len(unfinished)} jobs did not finish (e.g. {unfinished[0]})")
    jct = np.array([j.jct for j in res.jobs])
    queue = np.array([j.queued for j in res.jobs])
    first = min(j.arrival for j in res.jobs)
    makespan = max(j.finish for j in res.jobs if j.finish is not None) - first  # every job finished (checked above)
    busy = sum(j.gpu_seconds for j in res.jobs)
    starts, teams, got, fair = timeline(res)
    lengths = np.array([r.length for r in res.rounds])
    ratio = np.divide(got, fair, out=np.ones_like(got), where=fair > 1e-12)
    has = fair > 1e-12
    jains, weights = [], []
    for i in range(len(res.rounds)):
        x = ratio[i, has[i]]
        if len(x) >= 2 and (x**2).sum() > 0:
            jains.append(jain_index(x))
            weights.append(lengths[i])
    jain = float(np.average(jains, weights=weights)) if weights and sum(weights) > 0 else 1.0
    over_time = team_health(periods(res, health_period_days * DAY), rules)
    team_rows = []
    for k, team in enumerate(teams):
        mine = [j for j in res.jobs if j.team == team]
        recv = float((got[:, k] * lengths)[has[:, k]].sum()) / HOUR
        owed = float((fair[:, k] * lengths).sum()) / HOUR
        team_rows.append(
            TeamMetrics(
                team,
                res.teams[team],
                len(mine),
                float(np.mean([j.jct for j in mine])) / HOUR if mine else 0.0,
                float(sum(j.gpu_seconds for j in mine)) / HOUR,
                owed,
                recv / owed if owed > 0 else 1.0,
                *over_time[team],
                effective_share_ratio=(
                    float(sum(j.effective_gpu_seconds for j in mine)) / HOUR / owed if owed > 0 else 1.0
                ),
            )
        )
    r = rho(res)
    preempted = sum(j.preemptions for j in res.jobs)
    run_hours = sum(j.gpu_seconds / j.gpus for j in res.jobs if j.gpus) / HOUR
    return PolicyMetrics(
        policy=res.policy,
        jobs=len(res.jobs),
        avg_jct_h=float(jct.mean()) / HOUR,
        p95_jct_h=float(np.percentile(jct, 95)) / HOUR,
        makespan_h=makespan / HOUR,
        utilisation=busy / (res.cluster.total * makespan) if makespan > 0 else 0.0,
        queue_p95_h=float(np.percentile(queue, 95)) / HOUR,
        queue_max_h=float(queue.max()) / HOUR,
        preemptions=preempted,
        migrations=sum(j.migrations for j in res.jobs),
        jain=jain,
        min_share_ratio=min((t.share_ratio for t in team_rows if t.fair_gpu_hours > 0), default=1.0),
        rho_max=float(r.max()),
        rho_above_1=float((r > 1.0 + 1e-9).mean()),
        wall_seconds=res.wall_seconds,
        rounds=res.rounds_simulated,
        policy_calls=res.policy_calls,
        teams=team_rows,
        preemptions_per_job_hour=preempted / run_hours if run_hours > 0 else 0.0,
        longest_starved_streak=max((t.longest_starved_streak for t in team_rows), default=0),
        min_effective_share_ratio=min(
            (t.effective_share_ratio for t in team_rows if t.fair_gpu_hours > 0), default=1.0
        ),
    )
