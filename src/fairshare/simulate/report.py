"""Write a comparison to a directory: metrics.csv, teams.csv, metrics.json, two PNG plots and
a self-contained report.html (plots inlined, no network)."""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fairshare.simulate.engine import SimResult
from fairshare.simulate.metrics import PolicyMetrics, timeline

COLUMNS = {  # metric -> (table header, format)
    "avg_jct_h": ("avg JCT h", "{:.2f}"),
    "p95_jct_h": ("p95 JCT h", "{:.2f}"),
    "makespan_h": ("makespan h", "{:.1f}"),
    "utilisation": ("util", "{:.1%}"),
    "queue_p95_h": ("p95 wait h", "{:.2f}"),
    "queue_max_h": ("max wait h", "{:.1f}"),
    "preemptions": ("preempt", "{:d}"),
    "jain": ("Jain", "{:.3f}"),
    "min_share_ratio": ("worst team got/fair", "{:.2f}"),
    "rho_max": ("max rho", "{:.2f}"),
    "rho_above_1": ("rho>1", "{:.1%}"),
}


def fmt(metric: str, value: float | int) -> str:
    return COLUMNS[metric][1].format(value)


OUTPUTS = ("metrics.csv", "teams.csv", "metrics.json", "jct_cdf.png", "team_share.png", "report.html")


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
    cdf, shares = out / "jct_cdf.png", out / "team_share.png"
    plot_jct_cdf(results, cdf)
    plot_team_share(results, shares)
    files += [cdf, shares]
    report = out / "report.html"
    report.write_text(_html(metrics, meta, cdf, shares), encoding="utf-8")
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


def plot_team_share(results: Sequence[SimResult], path: Path, max_points: int = 1500) -> None:
    """One panel per policy: each team's GPUs received over time (solid) and its fair share
    while it had demand (dotted)."""
    plt = _plt()
    n = len(results)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.4 * n + 0.6), dpi=100, sharex=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, res in zip(axes[:, 0], results, strict=True):
        starts, teams, got, fair = timeline(res)
        ends = starts + np.array([r.length for r in res.rounds])
        # piecewise constant per round, dropping to 0 over skipped idle stretches
        gap = np.append(starts[1:] > ends[:-1] + 1e-6, True) if len(starts) else np.array([], bool)
        idx = np.repeat(np.arange(len(starts)), np.where(gap, 2, 1))
        x = starts[idx].astype(float)
        is_end = np.zeros(len(idx), bool)
        is_end[np.cumsum(np.where(gap, 2, 1)) - 1] = gap
        x[is_end] = ends[idx[is_end]]
        step = max(1, len(x) // max_points)
        for k, team in enumerate(teams):
            c = colors[k % len(colors)]
            y_got = np.where(is_end, 0.0, got[idx, k])
            y_fair = np.where(is_end, 0.0, fair[idx, k])
            ax.step(
                x[::step] / 3600.0,
                y_got[::step],
                where="post",
                color=c,
                lw=0.9,
                label=team if len(teams) <= 12 else None,
            )
            ax.step(x[::step] / 3600.0, y_fair[::step], where="post", color=c, lw=0.8, ls=":")
        ax.set_ylabel("GPUs")
        ax.set_title(f"{res.policy}: received (solid) vs fair share (dotted)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (hours)")
    if results and len(results[0].teams) <= 12:
        axes[0, 0].legend(fontsize=7, ncol=4, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _html(metrics: Sequence[PolicyMetrics], meta: dict, cdf: Path, shares: Path) -> str:
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
            cells.append(f"<td>{t.share_ratio:.2f} <small>({t.avg_jct_h:.1f} h)</small></td>")
        team_rows += f"<tr><th>{e(team)}</th>{''.join(cells)}</tr>"
    run = "".join(f"<li><b>{e(str(k))}</b>: {e(str(v))}</li>" for k, v in meta.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fairshare simulate: {e(str(meta.get("trace", "")))}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}}
table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}}
thead th{{background:#f3f3f3}}tbody th{{text-align:left}}img{{max-width:100%}}small{{color:#666}}
</style></head><body>
<h1>Policy comparison</h1>
<ul>{run}</ul>
<table><thead><tr><th>policy</th>{head}</tr></thead><tbody>{rows}</tbody></table>
<p>JCT: job completion time. util: GPU time held by jobs over GPUs x makespan. wait: queueing delay
before first start. got/fair: GPUs a team received over its weighted max-min fair share, while it had
demand. Jain: time-averaged Jain's index of those ratios across teams (1 = even). rho: Themis
finish-time fairness, JCT over JCT on a private 1/N of the cluster.</p>
<h2>Job completion times</h2>{_img(cdf)}
<h2>Per team: received over fair share <small>(average JCT)</small></h2>
<table><thead><tr><th>team</th>{team_head}</tr></thead><tbody>{team_rows}</tbody></table>
<h2>Per team over time</h2>{_img(shares)}
</body></html>
"""
