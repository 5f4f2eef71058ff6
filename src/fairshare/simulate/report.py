"""Write a comparison to a directory: metrics.csv, teams.csv, metrics.json, three PNG plots (JCT CDF,
the teams' heat map, the worst teams' small multiples) and a self-contained report.html (plots
inlined, no network)."""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fairshare.simulate.engine import SimResult
from fairshare.simulate.metrics import DAY, Periods, PolicyMetrics, TeamMetrics, periods

COLUMNS = {  # metric -> (table header, format)
    "avg_jct_h": ("avg JCT h", "{:.2f}"),
    "p95_jct_h": ("p95 JCT h", "{:.2f}"),
    "makespan_h": ("makespan h", "{:.1f}"),
    "utilisation": ("util", "{:.1%}"),
    "queue_p95_h": ("p95 wait h", "{:.2f}"),
    "queue_max_h": ("max wait h", "{:.1f}"),
    "preemptions": ("preempt", "{:d}"),
    "preemptions_per_job_hour": ("preempt/job-h", "{:.4f}"),
    "jain": ("Jain", "{:.3f}"),
    "min_share_ratio": ("worst team got/fair", "{:.2f}"),
    "min_effective_share_ratio": ("worst team eff got/fair", "{:.2f}"),
    "longest_starved_streak": ("longest starved", "{:d}"),
    "rho_max": ("max rho", "{:.2f}"),
    "rho_above_1": ("rho>1", "{:.1%}"),
}


def fmt(metric: str, value: float | int) -> str:
    return COLUMNS[metric][1].format(value)


OUTPUTS = (
    "metrics.csv",
    "teams.csv",
    "metrics.json",
    "jct_cdf.png",
    "team_heatmap.png",
    "worst_teams.png",
    "report.html",
)


def write_all(out: Path, metrics: Sequence[PolicyMetrics], results: Sequence[SimResult], meta: dict) -> list[Path]:
    """The replay's files (OUTPUTS) in `out`; the CLI checks before the replay that none of
    their names is taken by a directory."""
    out.mkdir(parents=True, exist_ok=True)
    files = [
        _csv(out / "metrics.csv", [m.row() for m in metrics]),
        _csv(out / "teams.csv", [{"policy": m.policy, **asdict(t)} for m in metrics for t in m.teams]),
    ]
    (out / "metrics.json").write_text(
        json.dumps({"run": meta, "policies": [asdict(m) for m in metrics]}, indent=2) + "\n"
    )
    files.append(out / "metrics.json")
    cdf, heat, worst = out / "jct_cdf.png", out / "team_heatmap.png", out / "worst_teams.png"
    plot_jct_cdf(results, cdf)
    seconds = heatmap_seconds(results, float(meta.get("health_period_days", 30.0)))
    plot_team_heatmap(results, heat, seconds)
    plot_worst_teams(metrics, results, worst, seconds)
    files += [cdf, heat, worst]
    report = out / "report.html"
    report.write_text(_html(metrics, meta, cdf, heat, worst), encoding="utf-8")
    files.append(report)
    return files


def _csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        if rows:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_jct_cdf(results: Sequence[SimResult], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for res in results:
        jct = np.sort([j.jct / 3600.0 for j in res.jobs])
        ax.step(jct, np.arange(1, len(jct) + 1) / len(jct), where="post", label=res.policy)
    ax.set_xscale("log")
    ax.set_xlabel("job completion time (hours, log scale)")
    ax.set_ylabel("fraction of jobs")
    ax.set_title("JCT CDF per policy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


HEATMAP_COLUMNS = 48  # a replay shorter than 24 health periods is cut into this many columns instead


def heatmap_seconds(results: Sequence[SimResult], health_period_days: float) -> float:
    """The heat map's column: a health period, or 1/48 of the replay when it spans under 24 periods
    (a three-month trace in monthly columns says little)."""
    period = health_period_days * DAY
    span = max((r.start + r.length for res in results for r in res.rounds[-1:]), default=0.0) - min(
        (res.rounds[0].start for res in results if res.rounds), default=0.0
    )
    return period if span >= 24 * period or span <= 0 else span / HEATMAP_COLUMNS


def _ratio(p: Periods) -> np.ma.MaskedArray:
    """received / fair share per [team, span]; masked (grey) where the team had no fair share (no demand)."""
    has = p.fair > 1e-9
    ratio = np.divide(p.got, p.fair, out=np.zeros_like(p.got), where=has)
    return np.ma.masked_array(ratio.T, mask=~has.T)


def plot_team_heatmap(results: Sequence[SimResult], path: Path, seconds: float) -> None:
    """One panel per policy: teams x time, each cell coloured by GPUs received / fair share over the
    column (red below, green above, grey without demand): readable with dozens of teams."""
    cut = [periods(res, seconds) for res in results]
    panels = [
        HeatPanel(f"{res.policy}: GPUs received / fair share", p.teams, _ratio(p), len(p.starts) * seconds / DAY)
        for res, p in zip(results, cut, strict=True)
    ]
    plot_heatmaps(panels, path, f"time (days; columns of {seconds / DAY:.3g} days)")


@dataclass
class HeatPanel:
    """One panel of a heat map: received / fair share per [team, column], masked without demand."""

    title: str
    teams: list[str]
    ratio: np.ma.MaskedArray
    end: float  # the x value of the last column's right edge (its first column starts at 0)


def plot_heatmaps(panels: Sequence[HeatPanel], path: Path, xlabel: str) -> None:
    """Panels one above the other on one x axis and one colour scale (0 red, 1 yellow, 2 or more
    green, grey without demand); `simulate`'s report and `sweep`'s both draw theirs with it."""
    plt = _plt()
    from matplotlib import colormaps

    cmap = colormaps["RdYlGn"].with_extremes(bad="#d9d9d9")
    n_teams = max((len(p.teams) for p in panels), default=1)
    rows = max(len(panels), 1)
    fig, axes = plt.subplots(
        rows,
        1,
        figsize=(9, (0.22 * n_teams + 0.9) * rows + 0.8),
        dpi=100,
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    image = None
    last = max((p.end for p in panels), default=1.0) or 1.0
    for ax, p in zip(axes[:, 0], panels, strict=False):
        image = ax.imshow(
            p.ratio,
            aspect="auto",
            interpolation="nearest",
            cmap=cmap,
            vmin=0.0,
            vmax=2.0,
            extent=(0.0, p.end or 1.0, len(p.teams) - 0.5, -0.5),
        )
        ax.set_xlim(0.0, last)  # one x axis for every panel, however soon its replay finished
        ax.set_facecolor("#d9d9d9")  # after its last job: no demand, grey as in the cells
        ax.set_yticks(range(len(p.teams)), p.teams, fontsize=7)
        ax.set_title(p.title, fontsize=9)
    axes[-1, 0].set_xlabel(xlabel)
    if image is not None:
        bar = fig.colorbar(image, ax=axes[:, 0].tolist(), shrink=0.9, pad=0.02)
        bar.set_label("received / fair share (2 or more: darkest green; grey: no demand)", fontsize=8)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def heat_matrix(res: SimResult, columns: int = HEATMAP_COLUMNS) -> tuple[list[str], list[list[float | None]]]:
    """The replay's teams and received / fair share per [team, column], the replay cut into
    `columns` equal spans (None: no demand).  Plain lists: a sweep's worker sends it back as data,
    and columns of replays of different lengths line up as fractions of each replay."""
    span = res.rounds[-1].start + res.rounds[-1].length - res.rounds[0].start if res.rounds else 0.0
    if span <= 0:
        return list(res.teams), [[None] * columns for _ in res.teams]
    p = periods(res, span / columns)
    ratio = _ratio(p)
    mask = np.ma.getmaskarray(ratio)
    rows = [
        [None if m else float(v) for v, m in zip(vals, masks, strict=True)]
        for vals, masks in zip(ratio.data.tolist(), mask.tolist(), strict=True)
    ]
    return list(p.teams), [(r + [None] * columns)[:columns] for r in rows]


def worst_teams(m: PolicyMetrics, n: int = 4) -> list[TeamMetrics]:
    """The policy's `n` teams furthest below their fair share (over the replay, while they had demand)."""
    return sorted((t for t in m.teams if t.fair_gpu_hours > 0), key=lambda t: (t.share_ratio, t.team))[:n]


def plot_worst_teams(
    metrics: Sequence[PolicyMetrics], results: Sequence[SimResult], path: Path, seconds: float, n: int = 4
) -> None:
    """Small multiples: per policy (a row), its `n` worst-served teams, GPUs received (solid) against
    fair share (dotted), averaged per heat map column, on one GPU axis and one time axis per row
    (a policy whose replay runs ten times longer would flatten every other row's lines)."""
    plt = _plt()
    fig, axes = plt.subplots(
        len(results), n, figsize=(2.4 * n + 0.6, 1.9 * len(results) + 0.6), dpi=100, sharex="row", squeeze=False
    )
    for row, (m, res) in enumerate(zip(metrics, results, strict=True)):
        p = periods(res, seconds)
        x = np.append(p.starts, p.starts[-1] + seconds) / DAY if len(p.starts) else np.zeros(1)
        worst = worst_teams(m, n)
        cols = [p.teams.index(t.team) for t in worst]
        top = max([1.0] + [float(max(p.fair[:, k].max(initial=0), p.got[:, k].max(initial=0))) for k in cols])
        for col in range(n):
            ax = axes[row, col]
            if col >= len(worst):
                ax.axis("off")
                continue
            t = worst[col]
            k = p.teams.index(t.team)
            ax.stairs(p.got[:, k], x, color="C3", lw=1.0, label="received")
            ax.stairs(p.fair[:, k], x, color="k", lw=0.9, ls=":", label="fair share")
            ax.set_ylim(0, top * 1.05)
            ax.set_title(f"{res.policy}: {t.team} (got/fair {t.share_ratio:.2f})", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        axes[row, 0].set_ylabel("GPUs", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("time (days)", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def page_head(title: str, heading: str, meta: Mapping, width: str = "70rem") -> str:
    """A self-contained report page's head (one style for `simulate`'s and `sweep`'s), its heading
    and the run's parameters as a list; the caller adds the body and closes the page."""
    e = html.escape
    run = "".join(f"<li><b>{e(str(k))}</b>: {e(str(v))}</li>" for k, v in meta.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;max-width:{width};color:#222}}
table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}}
thead th{{background:#f3f3f3}}tbody th{{text-align:left}}img{{max-width:100%}}small{{color:#666}}
</style></head><body>
<h1>{e(heading)}</h1>
<ul>{run}</ul>"""


def img_tag(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _html(metrics: Sequence[PolicyMetrics], meta: dict, cdf: Path, heat: Path, worst: Path) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h, _ in COLUMNS.values())
    rows = "".join(
        f"<tr><th>{e(m.policy)}</th>" + "".join(f"<td>{e(fmt(k, getattr(m, k)))}</td>" for k in COLUMNS) + "</tr>"
        for m in metrics
    )
    teams = sorted({t.team for m in metrics for t in m.teams})
    team_head = "".join(f"<th>{e(m.policy)}</th>" for m in metrics)
    team_rows = ""
    for team in teams:
        cells = []
        for m in metrics:
            t = next(t for t in m.teams if t.team == team)
            cells.append(
                f"<td>{t.share_ratio:.2f} <small>({t.avg_jct_h:.1f} h; starved {t.longest_starved_streak} "
                f"running, debt {t.debt:,.1f})</small></td>"
            )
        team_rows += f"<tr><th>{e(team)}</th>{''.join(cells)}</tr>"
    period = f"{float(meta.get('health_period_days', 30.0)):g}-day"
    return f"""{page_head(f"fairshare simulate: {meta.get('trace', '')}", "Policy comparison", meta)}
<table><thead><tr><th>policy</th>{head}</tr></thead><tbody>{rows}</tbody></table>
<p>JCT: job completion time. util: GPU time held by jobs over GPUs x makespan. wait: queueing delay
before first start. got/fair: GPUs a team received over its weighted max-min fair share, while it had
demand. longest starved: the worst team's longest run of starved health periods (below). preempt/job-h:
preemptions per hour of jobs running. eff got/fair: the same with each GPU-hour weighted by the job's
speed on that type over its speed on its fastest type (a policy that parks jobs on slow types loses
here). Jain: time-averaged Jain's index of those ratios across teams (1 = even). rho: Themis
finish-time fairness, JCT over JCT on a private 1/N of the cluster.</p>
<h2>Job completion times</h2>{img_tag(cdf)}
<h2>Per team: received over fair share <small>(average JCT; longest starved streak in
{e(period)} periods; debt in GPUs)</small></h2>
<table><thead><tr><th>team</th>{team_head}</tr></thead><tbody>{team_rows}</tbody></table>
<p>Starved in a period: received under 80% of its fair share while it asked for more (as in
<code>fairshare health</code>); debt: fair share minus received per period, halved every 3 periods.</p>
<h2>Per team over time</h2>{img_tag(heat)}
<h2>The four worst-served teams of each policy</h2>{img_tag(worst)}
</body></html>
"""
