"""Fairness over time: `GET /health` (every node's share of its fair share per published round, status,
starved streak, debt and why) and its Prometheus gauges on /metrics (docs/health.md)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel

from fairshare.engine.health import Health
from fairshare.errors import FairshareError
from fairshare.service.api.deps import CtxDep
from fairshare.service.ops import health as ops

router = APIRouter(tags=["health"])
METRIC_ROUNDS = 12  # the gauges look back this many published rounds (a longer streak shows as 12)


class WhyOut(BaseModel):
    rule: str
    effective: float
    text: str
    nodes: list[str]


class NodeRoundOut(BaseModel):
    round: str
    demand: int
    fair_share: float
    fair_share_gpus: float
    received: float
    received_gpus: int
    used: float | None
    share_of_fair: float | None
    starved: bool
    why: list[WhyOut]


class NodeHealthOut(BaseModel):
    name: str
    parent: str | None
    depth: int
    status: str
    starved_streak: int
    longest_streak: int
    debt: float
    rounds: list[NodeRoundOut]


class HealthOut(BaseModel):
    rounds: list[str]
    nodes: list[NodeHealthOut]


@router.get("/health", summary="Which node has been short of its fair share, for how long, and why")
def get_health(
    ctx: CtxDep,
    rounds: Annotated[int | None, Query(ge=1, le=1000, description="only the last N published rounds")] = None,
    round: Annotated[list[str] | None, Query(max_length=100, description="only these rounds (by name)")] = None,
) -> HealthOut:
    h = ops.lab_health(ctx.session, ctx.actor, ctx.now, names=round or (), last=rounds)
    return HealthOut.model_validate(h.to_dict())


class HealthGauges(Collector):
    """The newest published round's share_of_fair, starved streak and debt per node, as gauges.
    Computed when /metrics is scraped, again only after a round is published or re-solved."""

    def __init__(self, sessions: Any, clock: Any) -> None:
        self._sessions = sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: tuple[Any, Health | None] = (None, None)

    def _health(self) -> Health | None:
        with self._sessions() as session:
            rows = ops.published_rounds(session, last=METRIC_ROUNDS)
            stamp = tuple((r.id, r.current_run_id, r.published_at) for r in rows)
            with self._lock:
                if stamp == self._kept[0]:
                    return self._kept[1]
            try:
                h = ops.assess(session, rows, self._clock()) if rows else None
            except FairshareError:  # a scrape never fails for it; GET /health says what is wrong
                h = None
            with self._lock:
                self._kept = (stamp, h)
            return h

    def collect(self) -> Iterator[GaugeMetricFamily]:
        share = GaugeMetricFamily(
            "fairshare_team_share_of_fair", "received / fair share in the newest published round", labels=["team"]
        )
        streak = GaugeMetricFamily(
            "fairshare_team_starved_streak", "consecutive starved rounds ending with the newest", labels=["team"]
        )
        debt = GaugeMetricFamily(
            "fairshare_team_debt", "effective GPUs owed (fair share - received, decayed)", labels=["team"]
        )
        h = self._health()
        newest = h.rounds[-1] if h else None
        for n in h.nodes if h else []:
            latest = n.latest()
            if latest is not None and latest.round == newest and latest.share_of_fair is not None:
                share.add_metric([n.name], latest.share_of_fair)
            streak.add_metric([n.name], n.starved_streak)
            debt.add_metric([n.name], n.debt)
        yield share
        yield streak
        yield debt
