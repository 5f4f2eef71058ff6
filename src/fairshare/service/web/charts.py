"""Plotly figures as JSON specs, rendered in the browser by the bundled plotly.js (no CDN).

Pure: plain numbers in, a figure dict out; each chart also has a table on the page for screen
readers and for anyone who wants the numbers.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

LAYOUT: dict[str, Any] = {
    "margin": {"l": 48, "r": 16, "t": 36, "b": 48},
    "height": 340,
    "font": {"family": "system-ui, sans-serif", "size": 13},
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
}


def _spec(fig: go.Figure) -> dict[str, Any]:
    return fig.to_plotly_json()


def capacity_demand(pools: list[dict[str, Any]]) -> dict[str, Any]:
    """Per pool: GPUs in it, GPUs given out, GPUs asked for by requests that can run there."""
    names = [p["name"] for p in pools]
    fig = go.Figure(
        [
            go.Bar(name="capacity", x=names, y=[p["capacity"] for p in pools], marker_color="#1f4e79"),
            go.Bar(name="allocated", x=names, y=[p["allocated"] for p in pools], marker_color="#2e8b57"),
            go.Bar(
                name="asked for by requests that can run here",
                x=names,
                y=[p["demand"] for p in pools],
                marker_color="#c0504d",
            ),
        ]
    )
    fig.update_layout(
        barmode="group", title="Capacity against demand per pool (GPUs)", xaxis={"type": "category"}, **LAYOUT
    )
    return _spec(fig)


def org_sunburst(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The org tree sized by GPUs allocated (a node's value is its whole subtree's)."""
    fig = go.Figure(
        go.Sunburst(
            ids=[n["node"] for n in nodes],
            labels=[n["node"] for n in nodes],
            parents=[n["parent"] or "" for n in nodes],
            values=[n["total"] for n in nodes],
            branchvalues="total",
            hovertemplate="%{label}: %{value:,} GPUs<extra></extra>",
        )
    )
    fig.update_layout(title="Allocation over the organisation (GPUs)", **{**LAYOUT, "height": 420})
    return _spec(fig)


def team_history(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per past round: GPUs received, GPUs asked for, and the fair share in effective GPUs."""
    names = [r["round"] for r in rounds]
    fig = go.Figure(
        [
            go.Scatter(name="received (GPUs)", x=names, y=[r["total"] for r in rounds], mode="lines+markers"),
            go.Scatter(
                name="asked for (GPUs)",
                x=names,
                y=[r["demand"] for r in rounds],
                mode="lines+markers",
                line={"dash": "dot"},
            ),
            go.Scatter(
                name="fair share (effective GPUs)",
                x=names,
                y=[r["fair_share"] for r in rounds],
                mode="lines+markers",
                line={"dash": "dash"},
            ),
        ]
    )
    fig.update_layout(title="History over rounds", xaxis={"type": "category"}, **LAYOUT)
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
