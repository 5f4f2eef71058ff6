"""`fairshare simulate`: replay a cluster trace under several policies and compare them."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fairshare.cli._kit import UsageError, friendly, out, requires
from fairshare.errors import MissingExtra

DEFAULT_POLICIES = ["fifo", "quota", "slurm", "kueue", "gavel", "fairshare"]
MAX_RESTART_SECONDS = 86_400.0
RestartOption = typer.Option(30.0, "--restart-seconds", help="GPU time a preempted or moved job loses to restart.")
HalfLifeOption = typer.Option(168.0, "--half-life-hours", help="slurm: usage decay half-life.")
TeamColumnOption = typer.Option("vc", "--team-column", help="CSV traces: the column that names the team.")


def _checked(
    policy: list[str] | None, restart_seconds: float, half_life_hours: float, out_dir: Path, outputs: tuple[str, ...]
) -> list[str]:
    """The policies to replay, once each; UsageError for what simulate and sweep both refuse."""
    from fairshare.simulate.policies import POLICIES

    names = list(dict.fromkeys(policy or DEFAULT_POLICIES))
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise UsageError(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    if not 0 <= restart_seconds <= MAX_RESTART_SECONDS:  # also refuses nan and inf (inf never ends a stint)
        raise UsageError(f"--restart-seconds must be from 0 to {MAX_RESTART_SECONDS:g} (a day)")
    if not 0 < half_life_hours < math.inf:
        raise UsageError("--half-life-hours must be a positive number")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a directory")
    try:  # now, not after a replay of many minutes
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out_dir}: cannot create the directory ({e.strerror or e})") from None
    taken = [name for name in outputs if (out_dir / name).is_dir()]
    if taken:  # else the files before it would be written and the run would fail at it
        raise UsageError(f"--out {out_dir}: {', '.join(taken)} is a directory there; move it or choose another --out")
    return names


def _round_minutes_checked(values: list[float]) -> None:
    if not all(0 < r < math.inf for r in values):
        raise UsageError("--round-minutes must be a positive number")


@friendly
@requires("simulate", command="fairshare simulate")  # the report's plots: checked before a long replay
def simulate_cmd(
    trace: str = typer.Argument(
        ...,
        show_default=False,
        help="Gavel .trace file or directory of them (one team per file), a Helios/Acme "
        "CSV (job_id,user,vc,gpu_num,submit_time,start_time,end_time), or "
        "synthetic:JOBS[:TEAMS[:JOBS_PER_HOUR]].",
    ),
    policy: list[str] = typer.Option(
        None,
        "--policy",
        "-p",
        show_default=False,
        help=f"Policy to replay (repeat for several): {', '.join(DEFAULT_POLICIES)}. Default: all.",
    ),
    cluster: str = typer.Option(
        ...,
        "--cluster",
        "-c",
        show_default=False,
        help="GPUs per type, e.g. v100=300,p100=300,k80=300, or Gavel's V100:P100:K80 "
        "counts (300:300:300). The first type is the reference GPU.",
    ),
    out_dir: Path = typer.Option(
        ...,
        "--out",
        "-o",
        show_default=False,
        help="Directory for metrics.csv/.json, teams.csv, PNG plots and report.html.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for synthetic traces (replays are deterministic)."),
    round_minutes: float = typer.Option(6.0, "--round-minutes", help="Round length."),
    restart_seconds: float = RestartOption,
    half_life_hours: float = HalfLifeOption,
    team_column: str = TeamColumnOption,
    health_period_days: float = typer.Option(
        30.0,
        "--health-period-days",
        help="The committee's round: teams.csv's starved streaks and debt are counted in periods this long.",
    ),
    margin: float = typer.Option(
        None,
        "--margin",
        show_default=False,
        help="fairshare hysteresis: keep a team's running gangs while it holds at most its share x (1 + MARGIN), "
        "e.g. 0.25. Default: off (gangs move as soon as the shares change).",
    ),
    min_run_hours: float = typer.Option(
        0.0, "--min-run-hours", help="fairshare hysteresis: never move a gang that started less than this ago."
    ),
    wait_margin: str = typer.Option(
        "0.2",
        "--wait-margin",
        help="fairshare hysteresis on the waiting team: keep every running gang until a team with waiting jobs "
        "holds less than (1 - WAIT_MARGIN) of its share; then only the GPUs it lacks are taken, from the "
        "teams furthest over their share. 0 to 1, or off (gangs move as soon as the shares change).",
    ),
    unit: str = typer.Option(
        "gpus",
        "--unit",
        help="fairshare: what a team's share counts: gpus (max-min of GPU counts, the unit of got/fair; the "
        "engine's max-min of effective GPUs still picks each team's types) or effective (the engine's own "
        "totals of effective GPUs, speed x GPUs).",
    ),
    fit: str = typer.Option(
        "total",
        "--fit",
        help="fairshare: a gang fits its team's share when it fits the team's GPUs in total (total: a gang "
        "larger than the team's share of one type still starts) or of its type (type: the engine's exact "
        "placement, larger gangs wait for idle GPUs).",
    ),
    gavel_subset: bool = typer.Option(
        False,
        "--gavel-subset",
        help="Keep only the jobs Gavel's own simulator replays (gangs of 1/2/4/8; A3C, CycleGAN and "
        "Recommendation on 1 GPU only): 13,716 of the Philly-derived trace's 15,264.",
    ),
) -> None:
    """Replay a GPU cluster trace under several policies, side by side: JCT, waiting, utilisation, and what each policy does to every team."""  # noqa: E501 (one line: --help keeps line breaks)
    from fairshare.simulate import metrics as m
    from fairshare.simulate.engine import Cluster, SimulationError, simulate
    from fairshare.simulate.policies import make
    from fairshare.simulate.report import COLUMNS, OUTPUTS, fmt, write_all
    from fairshare.simulate.trace import TraceError, load_trace
    from fairshare.simulate.trace import gavel_subset as only_gavels

    _round_minutes_checked([round_minutes])
    if not 0 < health_period_days <= 3650:
        raise UsageError("--health-period-days must be above 0 and at most 3650 (ten years)")
    if margin is not None and not 0 <= margin < math.inf:
        raise UsageError("--margin must be a non-negative number (a fraction of a team's share, e.g. 0.25)")
    if not 0 <= min_run_hours < math.inf:
        raise UsageError("--min-run-hours must be a non-negative number")
    wait = _wait_margin(wait_margin)
    if unit not in ("effective", "gpus"):
        raise UsageError(f"--unit must be 'effective' or 'gpus', not {unit!r}")
    if fit not in ("total", "type"):
        raise UsageError(f"--fit must be 'total' or 'type', not {fit!r}")
    names = _checked(policy, restart_seconds, half_life_hours, out_dir, OUTPUTS)
    try:
        spec = Cluster.parse(cluster)
        jobs = load_trace(trace, team_column=team_column, seed=seed)
    except (TraceError, SimulationError) as e:
        raise UsageError(str(e)) from None
    if gavel_subset:
        jobs = only_gavels(jobs)
    if not jobs:
        raise UsageError(
            f"{trace}: no jobs" + (" that Gavel's simulator replays (--gavel-subset)" if gavel_subset else "")
        )
    out.print(
        f"{len(jobs):,} jobs from {len({j.team for j in jobs})} teams on {spec.describe()} "
        f"({spec.total:,} GPUs), {round_minutes:g}-minute rounds"
    )
    results, table = [], []
    with Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("jobs"),
        TimeElapsedColumn(),
        console=out,
        transient=False,
    ) as progress:
        for name in names:
            task = progress.add_task(name, total=len(jobs))
            params: dict[str, object] = {}
            if name == "slurm":
                params = {"half_life_hours": half_life_hours}
            elif name == "fairshare":
                params = {
                    "margin": margin,
                    "min_run_hours": min_run_hours,
                    "wait_margin": wait,
                    "fit": fit,
                    "unit": unit,
                }
            seen = [-1]

            def tick(_now: float, done: int, task=task, seen=seen) -> None:
                if done != seen[0]:
                    seen[0] = done
                    progress.update(task, completed=done)

            try:
                res = simulate(
                    jobs,
                    spec,
                    make(name, **params),
                    round_seconds=round_minutes * 60.0,
                    restart_seconds=restart_seconds,
                    on_round=tick,
                )
            except SimulationError as e:
                raise UsageError(str(e)) from None
            progress.update(task, completed=len(jobs))
            results.append(res)
            table.append(m.compute(res, health_period_days=health_period_days))
    t = Table(title="policy comparison", header_style="bold")
    t.add_column("policy")
    for header, _ in COLUMNS.values():
        t.add_column(header, justify="right")
    t.add_column("wall s", justify="right")
    for pm in table:
        t.add_row(pm.policy, *(fmt(k, getattr(pm, k)) for k in COLUMNS), f"{pm.wall_seconds:.1f}")
    out.print(t)
    meta = {
        "trace": trace,
        "jobs": len(jobs),
        "teams": len({j.team for j in jobs}),
        "cluster": spec.describe(),
        "round_minutes": round_minutes,
        "restart_seconds": restart_seconds,
        "seed": seed,
        "half_life_hours": half_life_hours,
        "health_period_days": health_period_days,
        "policies": names,
        **({"margin": margin} if margin is not None else {}),
        **({"min_run_hours": min_run_hours} if min_run_hours else {}),
        "wait_margin": wait,
        "fit": fit,
        "unit": unit,
        **({"gavel_subset": True} if gavel_subset else {}),
    }
    files = write_all(out_dir, table, results, meta)
    out.print(f"wrote {', '.join(str(f) for f in files)}")


def _wait_margin(text: str) -> float | None:
    """--wait-margin: a fraction of a team's share from 0 to 1, or off."""
    if text.strip().lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise UsageError(
            f"--wait-margin must be between 0 and 1 (a fraction of a team's share, e.g. 0.2) or off, not {text!r}"
        )
    return value


SWEEP_COLUMNS = (
    "avg_jct_h",
    "p95_jct_h",
    "makespan_h",
    "utilisation",
    "queue_max_h",
    "preemptions",
    "jain",
    "min_share_ratio",
    "rho_max",
)


@friendly
def sweep_cmd(
    trace: str = typer.Argument(
        ...,
        show_default=False,
        help="As for simulate; {seed} in a path is replaced by each seed (e.g. "
        "traces/seed={seed}), and synthetic:... traces are drawn with each seed.",
    ),
    policy: list[str] = typer.Option(
        None,
        "--policy",
        "-p",
        show_default=False,
        help=f"Policies (repeat): {', '.join(DEFAULT_POLICIES)}. Default: all.",
    ),
    cluster: list[str] = typer.Option(
        ...,
        "--cluster",
        "-c",
        show_default=False,
        help="Cluster specs to try (repeat), e.g. -c 300:300:300 -c v100=600,k80=300.",
    ),
    round_minutes: list[float] = typer.Option([6.0], "--round-minutes", "-r", help="Round lengths to try (repeat)."),
    seed: list[int] = typer.Option([0], "--seed", "-s", help="Seeds to try (repeat)."),
    out_dir: Path = typer.Option(
        ...,
        "--out",
        "-o",
        show_default=False,
        help="Directory for sweep.csv and sweep.json (one row per grid point; the JSON also has each "
        "replay's heat map data), sweep_report.html (the policies ranked per cluster, with heat maps) "
        "and one sweep_heatmap_<cluster>.png per cluster.",
    ),
    workers: int = typer.Option(
        0, "--workers", "-j", help="Local processes, or CPUs of a local Ray (--ray). Default: all cores."
    ),
    use_ray: bool = typer.Option(
        False,
        "--ray",
        help="Run on a local Ray started for this sweep (needs the extra: pip install 'fairshare\\[ray]').",
    ),
    ray_address: str = typer.Option(
        None,
        "--ray-address",
        show_default=False,
        help="Join an existing Ray cluster (e.g. ray://head:10001 or auto); implies "
        "--ray. Its nodes need fairshare installed.",
    ),
    restart_seconds: float = RestartOption,
    half_life_hours: float = HalfLifeOption,
    team_column: str = TeamColumnOption,
) -> None:
    """Replay a trace over a grid (policy x round length x cluster x seed) in parallel, in local processes or on Ray: one row of metrics per grid point."""  # noqa: E501 (one line: --help keeps line breaks)
    import json
    import os

    from fairshare.simulate import sweep as sw
    from fairshare.simulate.engine import Cluster, SimulationError
    from fairshare.simulate.report import COLUMNS, fmt
    from fairshare.simulate.sweep_report import HEAT_KEY, standings, write_report
    from fairshare.simulate.trace import TraceError

    _round_minutes_checked(round_minutes)
    if workers < 0:
        raise UsageError("--workers must not be negative")
    names = _checked(
        policy, restart_seconds, half_life_hours, out_dir, ("sweep.csv", "sweep.json", "sweep_report.html")
    )
    seeds = list(dict.fromkeys(seed))
    if len(seeds) > 1 and not sw.seeds_matter(trace):
        raise UsageError(
            f"several --seed values but {trace} does not depend on the seed (replays are "
            "deterministic): use a synthetic:... trace or put {seed} in the path"
        )
    ray_wanted = use_ray or bool(ray_address)
    if ray_wanted and not sw.ray_available():
        raise MissingExtra("fairshare sweep --ray", "ray")
    try:
        clusters = list(dict.fromkeys(Cluster.parse(c).describe() for c in cluster))
        points = sw.grid(
            trace,
            names,
            clusters,
            list(dict.fromkeys(round_minutes)),
            seeds,
            restart_seconds,
            half_life_hours,
            team_column,
        )
        sw.check_grid(points)
    except (TraceError, SimulationError) as e:
        raise UsageError(str(e)) from None
    n_workers = workers or os.cpu_count() or 1
    where = (
        (f"Ray at {ray_address}" if ray_address else f"a local Ray ({n_workers} CPUs)")
        if ray_wanted
        else f"{min(n_workers, len(points))} local process(es)"
    )
    out.print(
        f"{len(points)} replays ({len(names)} policies x {len(clusters)} clusters x {len(set(round_minutes))} "
        f"round lengths x {len(seeds)} seeds) on {where}"
    )
    with Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("replays"),
        TimeElapsedColumn(),
        console=out,
        transient=False,
    ) as progress:
        task = progress.add_task("sweep", total=len(points))

        def done(_row: dict) -> None:
            progress.advance(task)

        try:
            if ray_wanted:
                rows = sw.run_ray(
                    points, address=ray_address, num_cpus=None if ray_address else n_workers, on_done=done
                )
            else:
                rows = sw.run_local(points, min(n_workers, len(points)), on_done=done)
        except (TraceError, SimulationError) as e:
            raise UsageError(str(e)) from None
    report_rows = rows  # with their heat maps, for the report and sweep.json
    rows = [{k: v for k, v in r.items() if k != HEAT_KEY} for r in rows]
    t = Table(title="sweep", header_style="bold")
    for h in ("policy", "cluster", "round min", "seed"):
        t.add_column(h, overflow="fold")
    for k in SWEEP_COLUMNS:
        t.add_column(COLUMNS[k][0], justify="right")
    t.add_column("wall s", justify="right")
    for r in rows:
        t.add_row(
            r["policy"],
            r["cluster"],
            f"{r['round_minutes']:g}",
            str(r["seed"]),
            *(fmt(k, r[k]) for k in SWEEP_COLUMNS),
            f"{r['wall_seconds']:.1f}",
        )
    out.print(t)
    out_dir.mkdir(parents=True, exist_ok=True)
    import csv

    with (out_dir / "sweep.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    meta = {
        "trace": trace,
        "policies": names,
        "clusters": clusters,
        "round_minutes": list(dict.fromkeys(round_minutes)),
        "seeds": seeds,
        "restart_seconds": restart_seconds,
        "half_life_hours": half_life_hours,
        "runner": "ray" if ray_wanted else "processes",
        "ray_address": ray_address,
        "workers": n_workers,
    }
    (out_dir / "sweep.json").write_text(json.dumps({"run": meta, "rows": report_rows}, indent=2) + "\n")
    table = standings(rows)
    out.print(_standings_table(table))
    report = write_report(out_dir, report_rows, table, meta)
    out.print(f"wrote {out_dir / 'sweep.csv'}, {out_dir / 'sweep.json'}, " + ", ".join(str(f) for f in report))


def _standings_table(table: dict) -> Table:
    """The policies ranked per cluster (fairshare.simulate.sweep_report), as the report shows them."""
    from fairshare.simulate.report import COLUMNS
    from fairshare.simulate.sweep_report import SHOWN

    t = Table(title="ranking per cluster (means over round lengths and seeds)", header_style="bold")
    for h in ("cluster", "place", "policy", "mean rank"):
        t.add_column(h, overflow="fold")
    for k in SHOWN:
        t.add_column(COLUMNS[k][0], justify="right")
    for cluster, ranked in table.items():
        for s in ranked:
            t.add_row(
                cluster,
                str(s.place),
                s.policy,
                f"{s.mean_rank:.2f}",
                *(s.shown(k) for k in SHOWN),
            )
    return t


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)
    app.command("sweep")(sweep_cmd)
