"""fairshare: the engine's hierarchical weighted max-min across teams, then a within-team order.

Whenever the set of jobs changes, one Scenario is built: a pool per GPU type, the teams as
children of the root with their weights, and each team's demand as requests (one per kind of
job, i.e. per speed profile, asking for the sum of its queued and running gang sizes; speeds
relative to the cluster's first type).  `fairshare.engine.allocate` gives every team its
share of every type (exact, fractional).  Shares become gangs in two passes:

1. within shares: the team furthest below its share (GPUs placed / GPUs of share) places its
   next job in FIFO order on the preferred type (its current type, then the fastest) where the
   team's share has room for the whole gang (to the nearest GPU); a job that fits no share
   is passed over for now (the team's later jobs may still fit: backfill within the share);
2. work conserving: the jobs still waiting, the team furthest below its share first, take any
   idle GPUs that fit their gang.

Running jobs come first in FIFO order, so a job keeps its GPUs unless its team's share
shrinks (another team's demand arrives): that is when fairshare preempts."""

from __future__ import annotations

from fairshare.engine import allocate
from fairshare.scenario import OrgNode, Pool, Request, Scenario
from fairshare.simulate.engine import JobState, Snapshot
from fairshare.simulate.policies._common import preference

ROUNDING = 0.5  # a gang may exceed its team's exact share on a type by less than half a GPU


class Fairshare:
    name = "fairshare"
    stable = True

    def __init__(self, order: str = "fifo") -> None:
        if order not in ("fifo",):
            raise ValueError("within-team order must be 'fifo'")
        self.order = order
        self.solves = 0
        self.last_shares: dict[str, dict[str, float]] = {}

    def shares(self, snap: Snapshot) -> dict[str, dict[str, float]]:
        """team -> GPU type -> GPUs (exact) from the engine."""
        types = list(snap.capacity)
        ref = types[0]
        groups: dict[tuple, int] = {}
        for st in snap.jobs:
            job = st.job
            base = job.rate(ref) or job.best_rate(types)
            speed = tuple((t, round(job.rate(t) / base, 9)) for t in types if job.rate(t) > 0)
            groups[(st.team, speed)] = groups.get((st.team, speed), 0) + job.gpus
        node = _node_names(snap.teams)
        requests = [Request(id=f"r{i}", team=node[team], gpus=gpus, speed=dict(speed))
                    for i, ((team, speed), gpus) in enumerate(sorted(groups.items()))]
        org = OrgNode(name="root", children=[OrgNode(name=node[t], weight=w) for t, w in sorted(snap.teams.items())])
        scenario = Scenario(name="fairshare-round", pools=[Pool(name=t, gpu=t, gpus=n) for t, n in snap.capacity.items()],
                            org=org, reference_gpu=ref, requests=requests)
        alloc = allocate(scenario, fractional=True)
        self.solves += 1
        return {team: {t: float(alloc.node(node[team]).gpus.get(t, 0.0)) for t in types} for team in snap.teams}

    def schedule(self, snap: Snapshot) -> dict[str, str]:
        if not snap.jobs:
            return {}
        share = self.last_shares = self.shares(snap)
        types = list(snap.capacity)
        free = dict(snap.capacity)
        used = {team: dict.fromkeys(types, 0) for team in snap.teams}
        total_share = {team: sum(s.values()) for team, s in share.items()}
        placed_gpus = dict.fromkeys(snap.teams, 0)
        queues: dict[str, list[JobState]] = {}
        for st in sorted(snap.jobs, key=lambda s: (s.placement is None, s.job.arrival, s.id)):
            queues.setdefault(st.team, []).append(st)
        placement: dict[str, str] = {}
        waiting: list[JobState] = []

        def behind(team: str) -> tuple[float, str]:
            s = total_share[team]
            return (placed_gpus[team] / s if s > 0 else float("inf"), team)

        cursor = dict.fromkeys(queues, 0)
        while True:
            teams = [t for t in queues if cursor[t] < len(queues[t])]
            if not teams:
                break
            team = min(teams, key=behind)
            st = queues[team][cursor[team]]
            cursor[team] += 1
            g = st.job.gpus
            chosen = next((t for t in preference(st.job, types, st.placement)
                           if free[t] >= g and used[team][t] + g <= share[team][t] + ROUNDING), None)
            if chosen is None:
                waiting.append(st)
                continue
            placement[st.id] = chosen
            free[chosen] -= g
            used[team][chosen] += g
            placed_gpus[team] += g
        for st in sorted(waiting, key=lambda s: (behind(s.team), s.placement is None, s.job.arrival, s.id)):
            t = next((t for t in preference(st.job, types, st.placement) if free[t] >= st.job.gpus), None)
            if t is not None:
                placement[st.id] = t
                free[t] -= st.job.gpus
                placed_gpus[st.team] += st.job.gpus
        return placement


def _node_names(teams) -> dict[str, str]:
    """Team names as unique org node names (the scenario allows [A-Za-z0-9_.-])."""
    out: dict[str, str] = {}
    for i, team in enumerate(sorted(teams)):
        safe = "".join(c if c.isalnum() or c in "_.-" else "_" for c in team)
        name = f"team.{safe}"
        if name in out.values():
            name = f"{name}.{i}"
        out[team] = name
    return out
