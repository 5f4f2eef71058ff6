"""A sweep's report: the policies ranked per cluster, and per cluster the teams' heat map.

A committee compares policies on its own cluster sizes, so the ranking is per cluster, over every
round length and seed of the grid.  Each ranked metric's mean over those points ranks the policies
(1 = best); a policy's place is by the mean of its ranks (ties: lower average JCT first).  The heat
map is `simulate`'s (teams x time, received / fair share), averaged per cell over the cluster's
points, with time in fractions of each replay (replays of different traces differ in length).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fairshare.simulate.report import COLUMNS, HEATMAP_COLUMNS, HeatPanel, fmt, img_tag, page_head, plot_heatmaps

# metric -> True if higher is better; the order is the table's
RANKED: dict[str, bool] = {
    "avg_jct_h": False,
    "utilisation": True,
    "min_share_ratio": True,
    "min_effective_share_ratio": True,
    "jain": True,
    "preemptions_per_job_hour": False,
}
SHOWN = (*RANKED, "longest_starved_streak")
HEAT_KEY = "heat"  # a row's heat map data ({"teams": [...], "ratio": [[...]]}), kept out of sweep.csv


@dataclass
class Standing:
    """One policy on one cluster, over the cluster's grid points."""

    cluster: str
    policy: str
    points: int
    means: dict[str, float]
    ranks: dict[str, float]
    place: int = 0

    @property
    def mean_rank(self) -> float:
        return float(np.mean(list(self.ranks.values())))

    def shown(self, metric: str) -> str:
        """The metric's mean as the comparison table writes it (a mean of counts rounds to a count)."""
        value = self.means[metric]
        return fmt(metric, round(value) if COLUMNS[metric][1] == "{:d}" else value)


def _ranks(values: Sequence[float], higher_is_better: bool) -> list[float]:
    """1 for the best; equal values share the mean of their places."""
    v = np.array(values, dtype=float) * (-1.0 if higher_is_better else 1.0)
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(1, len(v) + 1, dtype=float)
    for x in np.unique(v):
        tied = v == x
        ranks[tied] = ranks[tied].mean()
    return ranks.tolist()


def standings(rows: Sequence[Mapping]) -> dict[str, list[Standing]]:
    """Per cluster (in the grid's order), its policies in their place order."""
    out: dict[str, list[Standing]] = {}
    for cluster in dict.fromkeys(r["cluster"] for r in rows):
        mine = [r for r in rows if r["cluster"] == cluster]
        policies = list(dict.fromkeys(r["policy"] for r in mine))
        table = [
            Standing(
                cluster,
                p,
                sum(r["policy"] == p for r in mine),
                {k: float(np.mean([float(r[k]) for r in mine if r["policy"] == p])) for k in SHOWN},
                {},
            )
            for p in policies
        ]
        for k, higher in RANKED.items():
            for s, rank in zip(table, _ranks([s.means[k] for s in table], higher), strict=True):
                s.ranks[k] = rank
        table.sort(key=lambda s: (s.mean_rank, s.means["avg_jct_h"], s.policy))
        for place, s in enumerate(table, 1):
            s.place = place
        out[cluster] = table
    return out


def mean_heat(rows: Sequence[Mapping], cluster: str, policy: str) -> tuple[list[str], np.ma.MaskedArray]:
    """The cluster's and policy's heat maps averaged per [team, column] over its grid points
    (a team absent from a point's trace, or without demand in a column there, does not count)."""
    heats = [r[HEAT_KEY] for r in rows if r["cluster"] == cluster and r["policy"] == policy and r.get(HEAT_KEY)]
    teams = sorted({t for h in heats for t in h["teams"]})
    total = np.zeros((len(teams), HEATMAP_COLUMNS))
    count = np.zeros_like(total)
    where = {t: i for i, t in enumerate(teams)}
    for h in heats:
        for team, ratios in zip(h["teams"], h["ratio"], strict=True):
            values = np.array([np.nan if v is None else v for v in ratios], dtype=float)[:HEATMAP_COLUMNS]
            has = ~np.isnan(values)
            total[where[team], : len(values)][has] += values[has]
            count[where[team], : len(values)][has] += 1
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return teams, np.ma.masked_array(mean, mask=count == 0)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def write_report(
    out_dir: Path, rows: Sequence[Mapping], table: Mapping[str, list[Standing]], meta: Mapping
) -> list[Path]:
    """sweep_report.html (`table`, the rows' `standings`, and the heat maps inlined) and one heat
    map PNG per cluster."""
    files: list[Path] = []
    sections = []
    for cluster, ranked in table.items():
        png = out_dir / f"sweep_heatmap_{_slug(cluster)}.png"
        panels = []
        for s in ranked:
            teams, ratio = mean_heat(rows, cluster, s.policy)
            title = f"{s.place}. {s.policy}: received / fair share (mean of {s.points} replays)"
            panels.append(HeatPanel(title, teams, ratio, 1.0))
        plot_heatmaps(panels, png, f"fraction of the replay ({HEATMAP_COLUMNS} columns)")
        files.append(png)
        sections.append(_section(cluster, ranked, png))
    report = out_dir / "sweep_report.html"
    report.write_text(_html(meta, sections), encoding="utf-8")
    files.append(report)
    return files


def _section(cluster: str, ranked: Sequence[Standing], png: Path) -> str:
    e = html.escape
    head = "".join(f"<th>{e(COLUMNS[k][0])}</th>" for k in SHOWN)
    body = "".join(
        f"<tr><td>{s.place}</td><th>{e(s.policy)}</th><td>{s.mean_rank:.2f}</td>"
        + "".join(
            f"<td>{e(s.shown(k))}" + (f" <small>({s.ranks[k]:g})</small>" if k in s.ranks else "") + "</td>"
            for k in SHOWN
        )
        + "</tr>"
        for s in ranked
    )
    return (
        f"<h2>{e(cluster)}</h2><table><thead><tr><th>place</th><th>policy</th><th>mean rank</th>{head}</tr>"
        f"</thead><tbody>{body}</tbody></table>{img_tag(png)}"
    )


def _html(meta: Mapping, sections: Sequence[str]) -> str:
    e = html.escape
    ranked = ", ".join(f"{COLUMNS[k][0]} ({'higher' if hi else 'lower'} is better)" for k, hi in RANKED.items())
    title = f"fairshare sweep: {meta.get('trace', '')}"
    return f"""{page_head(title, "Sweep: the policies ranked per cluster", meta, "75rem")}
<p>Each figure is the mean over the cluster's replays (every round length and seed). Each ranked
metric ranks the policies (1 = best, in brackets): {e(ranked)}. A policy's place is by the mean of
its ranks (ties: lower average JCT first). The heat maps are teams x time, GPUs received over the
fair share, averaged per cell over the replays, time in fractions of each replay.</p>
{"".join(sections)}
</body></html>
"""
