"""`fairshare simulate`: replay a cluster trace under several policies and compare them."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fairshare.clikit import UsageError, friendly, out

DEFAULT_POLICIES = ["fifo", "quota", "slurm", "kueue", "gavel", "fairshare"]


@friendly
def simulate_cmd(
    trace: str = typer.Argument(..., show_default=False,
                                help="Gavel .trace file or directory of them (one team per file), a Helios/Acme "
                                     "CSV (job_id,user,vc,gpu_num,submit_time,start_time,end_time), or "
                                     "synthetic:JOBS[:TEAMS[:JOBS_PER_HOUR]]."),
    policy: list[str] = typer.Option(None, "--policy", "-p", show_default=False,
                                     help=f"Policy to replay (repeat for several): {', '.join(DEFAULT_POLICIES)}. "
                                          "Default: all."),
    cluster: str = typer.Option(..., "--cluster", "-c", show_default=False,
                                help="GPUs per type, e.g. v100=300,p100=300,k80=300, or Gavel's V100:P100:K80 "
                                     "counts (300:300:300). The first type is the reference GPU."),
    out_dir: Path = typer.Option(..., "--out", "-o", show_default=False,
                                 help="Directory for metrics.csv/.json, teams.csv, PNG plots and report.html."),
    seed: int = typer.Option(0, "--seed", help="Seed for synthetic traces (replays are deterministic)."),
    round_minutes: float = typer.Option(6.0, "--round-minutes", help="Round length."),
    restart_seconds: float = typer.Option(30.0, "--restart-seconds",
                                          help="GPU time a preempted or moved job loses to restart."),
    half_life_hours: float = typer.Option(168.0, "--half-life-hours", help="slurm: usage decay half-life."),
    team_column: str = typer.Option("vc", "--team-column", help="CSV traces: the column that names the team."),
) -> None:
    """Replay a GPU cluster trace under several policies, side by side: JCT, waiting, utilisation,
    and what each policy does to every team."""
    from fairshare.simulate import metrics as m
    from fairshare.simulate.engine import Cluster, SimulationError, simulate
    from fairshare.simulate.policies import POLICIES, make
    from fairshare.simulate.report import COLUMNS, fmt, write_all
    from fairshare.simulate.trace import TraceError, load_trace

    names = list(dict.fromkeys(policy or DEFAULT_POLICIES))
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise UsageError(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    if round_minutes <= 0:
        raise UsageError("--round-minutes must be positive")
    if restart_seconds < 0:
        raise UsageError("--restart-seconds must not be negative")
    if half_life_hours <= 0:
        raise UsageError("--half-life-hours must be positive")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a directory")
    try:
        spec = Cluster.parse(cluster)
        jobs = load_trace(trace, team_column=team_column, seed=seed)
    except (TraceError, SimulationError) as e:
        raise UsageError(str(e)) from None
    if not jobs:
        raise UsageError(f"{trace}: no jobs")
    out.print(f"{len(jobs):,} jobs from {len({j.team for j in jobs})} teams on {spec.describe()} "
              f"({spec.total:,} GPUs), {round_minutes:g}-minute rounds")
    results, table = [], []
    with Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TextColumn("jobs"),
                  TimeElapsedColumn(), console=out, transient=False) as progress:
        for name in names:
            task = progress.add_task(name, total=len(jobs))
            params = {"half_life_hours": half_life_hours} if name == "slurm" else {}
            seen = [-1]

            def tick(_now: float, done: int, task=task, seen=seen) -> None:
                if done != seen[0]:
                    seen[0] = done
                    progress.update(task, completed=done)

            try:
                res = simulate(jobs, spec, make(name, **params), round_seconds=round_minutes * 60.0,
                               restart_seconds=restart_seconds, on_round=tick)
            except SimulationError as e:
                raise UsageError(str(e)) from None
            progress.update(task, completed=len(jobs))
            results.append(res)
            table.append(m.compute(res))
    t = Table(title="policy comparison", header_style="bold")
    t.add_column("policy")
    for header, _ in COLUMNS.values():
        t.add_column(header, justify="right")
    t.add_column("wall s", justify="right")
    for pm in table:
        t.add_row(pm.policy, *(fmt(k, getattr(pm, k)) for k in COLUMNS), f"{pm.wall_seconds:.1f}")
    out.print(t)
    meta = {"trace": trace, "jobs": len(jobs), "teams": len({j.team for j in jobs}), "cluster": spec.describe(),
            "round_minutes": round_minutes, "restart_seconds": restart_seconds, "seed": seed,
            "half_life_hours": half_life_hours, "policies": names}
    files = write_all(out_dir, table, results, meta)
    out.print(f"wrote {', '.join(str(f) for f in files)}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_cmd)
