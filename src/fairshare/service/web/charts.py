"""Plotly figures as JSON specs, rendered in the browser by the bundled plotly.js (no CDN).

Pure: plain numbers in, a figure dict out; each chart also has a table on the page for screen
readers and for anyone who wants the numbers.  Legends sit below the plot so that on a phone
they never cover the bars.
"""

from __future__ import annotations

import hashlib
from typing import Any

import plotly.graph_objects as go

LAYOUT: dict[str, Any] = {
    "margin": {"l": 48, "r": 16, "t": 36, "b": 48},
    "height": 360,
    "font": {"family": "system-ui, sans-serif", "size": 13},
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
    "legend": {"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0},
}
# colour-blind-safe palette (Okabe-Ito, then Tol's muted) for the sunburst's nodes
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
)


def _spec(fig: go.Figure) -> dict[str, Any]:
    return fig.to_plotly_json()


def node_colour(name: str) -> str:
    """One colour per node name, the same in every round and on every page (a hash, not the order
    in which the nodes happen to come)."""
    return PALETTE[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(PALETTE)]


def capacity_demand(pools: list[dict[str, Any]]) -> dict[str, Any]:
    """Per pool: GPUs in it, GPUs given out, and beside them the GPUs asked for, stacked: by requests
    that can run only in this pool, then by requests that could also run in other pools."""
    names = [p["name"] for p in pools]
    only = [p.get("only", p["demand"]) for p in pools]
    fig = go.Figure(
        [
            go.Bar(name="capacity", x=names, y=[p["capacity"] for p in pools], marker_color="#1f4e79", offsetgroup="c"),
            go.Bar(
                name="allocated", x=names, y=[p["allocated"] for p in pools], marker_color="#2e8b57", offsetgroup="a"
            ),
            go.Bar(name="asked, can run only here", x=names, y=only, marker_color="#a4262c", offsetgroup="d"),
            go.Bar(
                name="asked, can also run elsewhere",
                x=names,
                y=[p.get("shared", 0) for p in pools],
                base=only,
                marker_color="#e8a3a5",
                offsetgroup="d",
            ),
        ]
    )
    fig.update_layout(
        barmode="group", title="Capacity against demand per pool (GPUs)", xaxis={"type": "category"}, **LAYOUT
    )
    return _spec(fig)


def org_sunburst(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The org tree sized by GPUs allocated (a node's value is its whole subtree's), one stable colour per node."""
    fig = go.Figure(
        go.Sunburst(
            ids=[n["node"] for n in nodes],
            labels=[n["node"] for n in nodes],
            parents=[n["parent"] or "" for n in nodes],
            values=[n["total"] for n in nodes],
            branchvalues="total",
            marker={"colors": [node_colour(n["node"]) for n in nodes]},
            hovertemplate="%{label}: %{value:,} GPUs<extra></extra>",
        )
    )
    fig.update_layout(title="Allocation over the organisation (GPUs)", **{**LAYOUT, "height": 420})
    return _spec(fig)


def team_history(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per published round, all in GPUs: received, fair share by weights alone and used on average,
    with received as a % of fair share on a second axis (docs/health.md)."""
    names = [r["round"] for r in rounds]
    fig = go.Figure(
        [
            go.Bar(name="received (GPUs)", x=names, y=[r["received"] for r in rounds], marker_color="#1f4e79"),
            go.Scatter(
                name="fair share (GPUs)",
                x=names,
                y=[r["fair"] for r in rounds],
                mode="lines+markers",
                line={"dash": "dash", "color": "#E69F00"},
            ),
            go.Scatter(
                name="used (GPUs, average)",
                x=names,
                y=[r["used"] for r in rounds],
                mode="lines+markers",
                line={"dash": "dot", "color": "#009E73"},
            ),
            go.Scatter(
                name="% of fair share",
                x=names,
                y=[r["pct"] for r in rounds],
                mode="lines+markers",
                yaxis="y2",
                line={"color": "#a4262c"},
            ),
        ]
    )
    fig.update_layout(
        title="History over rounds",
        xaxis={"type": "category"},
        yaxis={"title": "GPUs", "rangemode": "tozero"},
        yaxis2={"title": "% of fair share", "overlaying": "y", "side": "right", "rangemode": "tozero"},
        **{**LAYOUT, "margin": {**LAYOUT["margin"], "r": 56}},
    )
    return _spec(fig)


def whatif_bars(changes: list[dict[str, Any]]) -> dict[str, Any]:
    """GPUs gained (+) or lost (-) per team."""
    fig = go.Figure(
        go.Bar(
            x=[c["name"] for c in changes],
            y=[c["delta"] for c in changes],
            marker_color=["#2e8b57" if c["delta"] >= 0 else "#c0504d" for c in changes],
        )
    )
    fig.update_layout(title="Who gains and who loses (GPUs per team)", xaxis={"type": "category"}, **LAYOUT)
    return _spec(fig)
