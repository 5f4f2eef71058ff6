"""GPU usage read back from Slurm's accounting (`sacct`) into the store, per account, gres type and UTC day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fairshare.connectors.slurm.plan import GPU, SlurmConfig, parse_tres
from fairshare.connectors.slurm.tools import Runner, SlurmError, split_rows
from fairshare.store import models as m

SACCT = "sacct"


@dataclass(frozen=True)
class UsageBucket:
    account: str
    gres: str  # Slurm gres type, or "" for GPUs whose type sacct did not report
    start: dt.datetime  # a UTC day
    end: dt.datetime  # the day's end, or the import's end for the last (partial) day
    gpu_hours: float


def day_floor(t: dt.datetime) -> dt.datetime:
    t = t.astimezone(dt.UTC)
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _sacct_time(text: str) -> dt.datetime | None:
    if not text or text in ("Unknown", "None"):
        return None
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def read_usage(run: Runner, cluster: str, since: dt.datetime, until: dt.datetime) -> list[UsageBucket]:
    """GPU-hours per account, gres type and UTC day between `since` (floored to its day) and `until`,
    from `sacct --allocations`: each job's AllocTRES GPUs times the part of its run time
    (Start + Elapsed) that falls in each day.  Every day from the first to `until` is complete,
    so storing them in place of what was there never counts a GPU-hour twice."""
    start = day_floor(since)
    fmt = "%Y-%m-%dT%H:%M:%S"
    out = run(
        [
            SACCT,
            "-Pn",
            "--allocations",
            "--allusers",
            f"--clusters={cluster}",
            f"--starttime={start.strftime(fmt)}",
            f"--endtime={until.astimezone(dt.UTC).strftime(fmt)}",
            "--format=JobID,Account,AllocTRES,ElapsedRaw,Start,State",
        ],
        env={"TZ": "UTC", "SLURM_TIME_FORMAT": "standard"},
    )  # times in UTC, ISO 8601
    hours: dict[tuple[str, str, dt.datetime], float] = {}
    for r in split_rows(out):
        if len(r) < 6:
            raise SlurmError(f"unexpected sacct output line {'|'.join(r)!r}")
        _, account, alloc, elapsed, began, _state = r[:6]
        t0 = _sacct_time(began)
        if t0 is None or not elapsed.isdigit():
            continue
        tres = parse_tres(alloc)
        typed = {k.split(":", 1)[1]: n for k, n in tres.items() if k.startswith(GPU + ":")}
        rest = tres.get(GPU, 0) - sum(typed.values())
        if rest > 0:
            typed[""] = rest
        if not typed:
            continue
        t1 = min(t0 + dt.timedelta(seconds=int(elapsed)), until)
        t = max(t0, start)
        while t < t1:
            day = day_floor(t)
            seg_end = min(day + dt.timedelta(days=1), t1)
            for gres, n in typed.items():
                key = (account, gres, day)
                hours[key] = hours.get(key, 0.0) + n * (seg_end - t).total_seconds() / 3600
            t = seg_end
    return [
        UsageBucket(a, g, d, min(d + dt.timedelta(days=1), until), h)
        for (a, g, d), h in sorted(hours.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1]))
    ]


def node_of_account(account: str, cfg: SlurmConfig, nodes: Iterable[str], root_node: str | None = None) -> str | None:
    """The org node a managed account stands for: None for accounts without the prefix, and,
    when the org's nodes are known, for accounts that name none of them."""
    by_lower = {n.lower(): n for n in nodes}
    if cfg.root_account and root_node and account == cfg.root_account.lower():
        return root_node
    prefix = cfg.prefix.lower()
    if not account.startswith(prefix) or account == prefix:
        return None
    rest = account[len(prefix) :]
    return by_lower.get(rest) if by_lower else rest


def gpu_of_gres(gres: str, cfg: SlurmConfig, gpu_types: Iterable[str]) -> str:
    """The fairshare GPU type of a Slurm gres type: the --gres-map's inverse, else a known type that
    maps to it by default (lower case), else the gres type in upper case."""
    if not gres:
        return "untyped"
    for gpu, g in cfg.gres_map.items():
        if g == gres:
            return gpu
    for gpu in gpu_types:
        if cfg.gres_type(gpu) == gres:
            return gpu
    return gres.upper()


def store_usage(
    session: Session, buckets: list[UsageBucket], cfg: SlurmConfig, cluster: str, since: dt.datetime, until: dt.datetime
) -> dict[str, object]:
    """Replace the source's usage rows for every day from `since`'s to `until` by `buckets`:
    a re-import of the same (or an overlapping) period replaces, never adds.  The caller commits."""
    source = f"slurm:{cluster}"
    nodes = list(session.scalars(select(m.Node.name)))
    root = session.scalar(select(m.Node.name).where(m.Node.parent_id.is_(None)))
    gpu_types = list(dict.fromkeys(session.scalars(select(m.Pool.gpu))))
    first = day_floor(since)
    session.execute(
        delete(m.Usage).where(m.Usage.source == source, m.Usage.period_start >= first, m.Usage.period_start < until)
    )
    now = dt.datetime.now(dt.UTC)
    rows: dict[tuple[str, str, dt.datetime], m.Usage] = {}
    skipped: dict[str, float] = {}
    for b in buckets:
        node = node_of_account(b.account, cfg, nodes, root)
        if node is None:
            skipped[b.account] = skipped.get(b.account, 0.0) + b.gpu_hours
            continue
        gpu = gpu_of_gres(b.gres, cfg, gpu_types)
        key = (node, gpu, b.start)
        if key in rows:
            rows[key].gpu_hours += b.gpu_hours
        else:
            rows[key] = m.Usage(
                source=source,
                node=node,
                gpu=gpu,
                period_start=b.start,
                period_end=b.end,
                gpu_hours=b.gpu_hours,
                imported_at=now,
            )
    session.add_all(rows.values())
    session.flush()
    totals: dict[tuple[str, str], float] = {}
    for (node, gpu, _), row in rows.items():
        totals[(node, gpu)] = totals.get((node, gpu), 0.0) + row.gpu_hours
    return {
        "source": source,
        "from": first.isoformat(),
        "until": until.isoformat(),
        "rows": len(rows),
        "totals": {f"{n}/{g}": round(h, 4) for (n, g), h in sorted(totals.items())},
        "skipped_accounts": {a: round(h, 4) for a, h in sorted(skipped.items())},
    }
