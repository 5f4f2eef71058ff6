"""Tiny traces for the simulator tests."""

from __future__ import annotations

from fairshare.simulate.engine import Cluster, SimResult, simulate
from fairshare.simulate.policies import make
from fairshare.simulate.trace import Job


def job(id: str, team: str, arrival: float, gpus: int, work: float, **tput: float) -> Job:
    return Job(id=id, team=team, arrival=arrival, gpus=gpus, work=work, throughput=tput)


def run(
    policy: str, jobs: list[Job], cluster: str, round_seconds: float = 100.0, restart: float = 0.0, **params: object
) -> SimResult:
    return simulate(
        jobs, Cluster.parse(cluster), make(policy, **params), round_seconds=round_seconds, restart_seconds=restart
    )


def finishes(res: SimResult) -> dict[str, float]:
    return {j.id: round(j.finish, 6) for j in res.jobs}  # type: ignore[arg-type]
