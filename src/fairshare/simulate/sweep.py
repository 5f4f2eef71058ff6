"""Parameter sweeps: policy x round length x cluster x seed, one replay per grid point, run in
parallel in local processes or on Ray.

A grid point is a plain dict (`Point`), and its result a plain dict of numbers and strings, so
the same function runs in a `ProcessPoolExecutor` worker or as a Ray task and the two give the
same rows (replays are deterministic; only `wall_seconds` differs).  Each worker loads a trace
once and keeps it for the points that share it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

RAY_HINT = "pip install 'fairshare[ray]'"
SEED_FIELD = "{seed}"


@dataclass(frozen=True)
class Point:
    """One replay of a sweep."""

    index: int  # place in the grid (rows come back in this order)
    trace: str  # as given, with {seed} replaced
    policy: str
    cluster: str
    round_minutes: float
    seed: int
    restart_seconds: float = 30.0
    half_life_hours: float = 168.0
    team_column: str = "vc"


def trace_for_seed(trace: str, seed: int) -> str:
    return trace.replace(SEED_FIELD, str(seed))


def seeds_matter(trace: str) -> bool:
    """Seeds change a synthetic trace, or a path with {seed} (e.g. Gavel's seed=N directories);
    a replay itself has no randomness."""
    return trace.startswith("synthetic:") or SEED_FIELD in trace


def grid(
    trace: str,
    policies: Sequence[str],
    clusters: Sequence[str],
    round_minutes: Sequence[float],
    seeds: Sequence[int],
    restart_seconds: float = 30.0,
    half_life_hours: float = 168.0,
    team_column: str = "vc",
) -> list[Point]:
    """Every combination, in a fixed order: seed, cluster, round length, then policy.  Cluster
    specs are written out (`8:8:8` becomes `v100=8,p100=8,k80=8`); a bad one raises SimulationError."""
    from fairshare.simulate.engine import Cluster

    specs = list(dict.fromkeys(Cluster.parse(c).describe() for c in clusters))
    combos = itertools.product(seeds, specs, round_minutes, policies)
    return [
        Point(
            i,
            trace_for_seed(trace, seed),
            policy,
            cluster,
            float(rm),
            seed,
            restart_seconds,
            half_life_hours,
            team_column,
        )
        for i, (seed, cluster, rm, policy) in enumerate(combos)
    ]


@lru_cache(maxsize=4)
def _jobs(trace: str, team_column: str, seed: int):
    from fairshare.simulate.trace import load_trace

    return tuple(load_trace(trace, team_column=team_column, seed=seed))


def run_point(point: Point | dict) -> dict:
    """Replay one grid point; the grid values, then every metric of the policy comparison."""
    from fairshare.simulate import metrics as m
    from fairshare.simulate.engine import Cluster, simulate
    from fairshare.simulate.policies import make
    from fairshare.simulate.report import heat_matrix
    from fairshare.simulate.sweep_report import HEAT_KEY

    p = point if isinstance(point, Point) else Point(**point)
    jobs = _jobs(p.trace, p.team_column, p.seed)
    params = {"half_life_hours": p.half_life_hours} if p.policy == "slurm" else {}
    res = simulate(
        jobs,
        Cluster.parse(p.cluster),
        make(p.policy, **params),
        round_seconds=p.round_minutes * 60.0,
        restart_seconds=p.restart_seconds,
    )
    row = {
        "index": p.index,
        "policy": p.policy,
        "cluster": p.cluster,
        "round_minutes": p.round_minutes,
        "seed": p.seed,
        "trace": p.trace,
    }
    metrics = m.compute(res).row()
    metrics.pop("policy")
    row.update(metrics)
    teams, ratio = heat_matrix(res)
    row[HEAT_KEY] = {"teams": teams, "ratio": ratio}  # for the report's heat maps; not a column of sweep.csv
    return row


def check_grid(points: Sequence[Point]) -> None:
    """Fail before dispatching anything if a trace cannot load or a cluster cannot run it
    (raises TraceError or SimulationError with the reason)."""
    from fairshare.simulate.engine import Cluster, check_fits

    for trace, team_column, seed, cluster in sorted({(p.trace, p.team_column, p.seed, p.cluster) for p in points}):
        jobs = _jobs(trace, team_column, seed)
        if not jobs:
            from fairshare.simulate.trace import TraceError

            raise TraceError(f"{trace}: no jobs")
        check_fits(jobs, Cluster.parse(cluster))


def run_local(points: Sequence[Point], workers: int, on_done: Callable[[dict], None] | None = None) -> list[dict]:
    """In `workers` local processes (1: in this process)."""
    rows: list[dict] = []
    if workers <= 1:
        for p in points:
            rows.append(run_point(p))
            if on_done:
                on_done(rows[-1])
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: the parent may hold threads (Rich's progress refresh, the engine's pool)
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(run_point, asdict(p)) for p in points]
            for f in as_completed(futures):
                rows.append(f.result())
                if on_done:
                    on_done(rows[-1])
    return sorted(rows, key=lambda r: r["index"])


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def run_ray(
    points: Sequence[Point],
    address: str | None = None,
    num_cpus: int | None = None,
    on_done: Callable[[dict], None] | None = None,
) -> list[dict]:
    """As Ray tasks, one CPU each: on a local Ray started here (`num_cpus`), or on the cluster at
    `address` (its nodes need fairshare installed).  A local Ray started here is stopped after,
    and a connection made here to a cluster is closed (the cluster keeps running)."""
    import ray

    connected_here = not ray.is_initialized()
    if connected_here:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(run_point)
        pending = [task.remote(asdict(p)) for p in points]
        rows: list[dict] = []
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                rows.append(ray.get(ref))
                if on_done:
                    on_done(rows[-1])
    finally:
        if connected_here:
            ray.shutdown()
    return sorted(rows, key=lambda r: r["index"])


def comparable(rows: Iterable[dict]) -> Iterator[dict]:
    """Rows without the timing column (what must agree between runs of the same grid)."""
    for r in rows:
        yield {k: v for k, v in r.items() if k != "wall_seconds"}
