"""Turn an Allocation into what people read: Rich tables, JSON, CSV.  No computation here."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fairshare.engine import Allocation, ReasonCode


def to_dict(alloc: Allocation) -> dict[str, Any]:
    """The documented `--json` shape (docs/output.md)."""
    return dataclasses.asdict(alloc)


def to_json(alloc: Allocation) -> str:
    """`to_dict` as indented JSON.  The result's dataclasses are encoded from their own field
    dicts (`vars`, in field order, as `asdict` gives them) without asdict's deep copy first."""
    return json.dumps(alloc, default=vars, indent=2, sort_keys=False) + "\n"


def to_csv(alloc: Allocation) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["request", "team", "pool", "gpus", "effective", "weight", "reason"])
    for r in alloc.requests:
        rows = sorted(r.gpus.items()) or [("", 0)]
        for pool, n in rows:
            w.writerow([r.id, r.team, pool, _num(n), f"{r.effective:.6g}", f"{r.weight:.6g}", r.reason.code])
    return out.getvalue()


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.4f}"


ALLOCATION_COLUMNS = (
    ("team / request", "left"),
    ("demand", "right"),
    ("GPUs", "right"),
    ("by pool", "left"),
    ("effective", "right"),
    ("of demand", "right"),
    ("reason", "left"),
)
POOLS_COLUMN, POOLS_MIN_WIDTH = 3, 24  # "by pool" is the one column that wraps to fit the terminal
REASON_STYLE = {
    ReasonCode.demand_met: "green",
    ReasonCode.fair_share: "cyan",
    ReasonCode.limit: "yellow",
    ReasonCode.guarantee: "magenta",
    ReasonCode.below_min: "red",
    ReasonCode.no_usable_pool: "red",
}


def print_allocation(alloc: Allocation, console: Console) -> None:
    """The allocation table (a row per team, then its requests), every request's reason, the
    capacity used and the fairness summary.  Cells are Text (no markup to parse) and columns
    get their width up front: Rich otherwise measures every cell, which takes seconds for a
    lab of 10,000 requests."""
    title = f"{alloc.scenario}: allocation" + (" (exact fractional shares)" if alloc.fractional else "")
    rows: list[tuple[Text, ...]] = []
    by_team: dict[str, list] = {}
    for r in alloc.requests:
        by_team.setdefault(r.team, []).append(r)
    for team, reqs in by_team.items():
        demand = sum(r.demand for r in reqs)
        got = sum(r.total for r in reqs)
        rows.append(
            (
                Text(team, style="bold"),
                Text(f"{demand:,}"),
                Text(_cell(got)),
                Text(""),
                Text(f"{sum(r.effective for r in reqs):,.1f}"),
                Text(f"{got / demand:.0%}" if demand else "-"),
                Text(""),
            )
        )
        for r in reqs:
            pools = ", ".join(f"{_cell(n)} {p}" for p, n in sorted(r.gpus.items(), key=lambda kv: -kv[1]))
            rows.append(
                (
                    Text(f"  {r.id}"),
                    Text(f"{r.demand:,}"),
                    Text(_cell(r.total)),
                    Text(pools) if pools else Text("-", style="dim"),
                    Text(f"{r.effective:,.1f}"),
                    Text(f"{r.total / r.demand:.0%}"),
                    Text(r.reason.code, style=_style(r.reason.code)),
                )
            )
    table = Table(title=title, header_style="bold")
    for (col, justify), width in zip(ALLOCATION_COLUMNS, _column_widths(rows, console.width), strict=True):
        table.add_column(col, justify=justify, width=width)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print("[bold]Reasons[/]")
    reasons = Text()
    for r in alloc.requests:
        reasons.append("  ")
        reasons.append(r.id, style=_style(r.reason.code))
        reasons.append(f": {r.reason.text}\n")
    reasons.rstrip()
    console.print(reasons)
    summary = Table(title="capacity", header_style="bold")
    for col in ("pool", "gpu", "site", "capacity", "allocated", "used"):
        summary.add_column(col, justify="right" if col in ("capacity", "allocated", "used") else "left")
    for p in alloc.pools:
        summary.add_row(
            p.name,
            p.gpu,
            p.site,
            f"{p.capacity:,}",
            _cell(p.allocated),
            f"{p.allocated / p.capacity:.0%}" if p.capacity else "-",
        )
    console.print(summary)
    f = alloc.fairness
    console.print(
        f"Jain index over teams' effective/weight: [bold]{f.jain_index:.3f}[/]   "
        f"least satisfied: [bold]{f.least_satisfied_team}[/] ({(f.least_satisfied_share or 0):.0%} of demand)   "
        + (f"not funded (below min): [red]{', '.join(f.below_min)}[/]" if f.below_min else "every request funded")
    )
    s = alloc.stats
    console.print(
        f"[dim]solved in {s.solve_seconds:.3f} s: {s.lp_solves} LPs, {s.levels} fairness levels, "
        f"{s.groups} sibling groups, {s.min_rounds} minimum-size round(s)[/]"
    )


def _column_widths(rows: list[tuple[Text, ...]], room: int) -> list[int | None]:
    """Every column as wide as its widest cell, "by pool" wrapping in what is left of `room`.
    If that leaves it too narrow, None for all: Rich then measures the cells and shares the
    squeeze among the columns itself (slower, but a narrow terminal never crops a number)."""
    widths = [max([len(col)] + [row[i].cell_len for row in rows]) for i, (col, _) in enumerate(ALLOCATION_COLUMNS)]
    natural = widths[POOLS_COLUMN]
    # the table's frame: a border left of every column and one at the end, one space padding each side
    left = room - (sum(widths) - natural + 3 * len(widths) + 1)
    if left < min(natural, POOLS_MIN_WIDTH):
        return [None] * len(widths)
    widths[POOLS_COLUMN] = min(natural, left)
    return list(widths)


def _style(code: ReasonCode) -> str:
    return REASON_STYLE.get(code, "")


def _cell(v: float) -> str:
    if not v:
        return "0"
    return f"{int(v):,}" if float(v).is_integer() else f"{v:,.2f}"
