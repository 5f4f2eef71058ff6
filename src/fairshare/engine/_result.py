"""What the engine returns: plain dataclasses, the stable shape behind `--json`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ReasonCode(StrEnum):
    """What bound a request, one word per cause: the vocabulary of `Reason.code` everywhere
    (a `str` enum, so JSON, CSV and the database hold the plain word)."""

    demand_met = "demand_met"  # got all it asked for
    fair_share = "fair_share"  # frozen at its fair level by the pools it can use
    limit = "limit"  # capped by an ancestor's limit
    guarantee = "guarantee"  # held up by an ancestor's guarantee
    below_min = "below_min"  # not funded: its fair share was below its minimum
    no_usable_pool = "no_usable_pool"  # no pool it can run on has GPUs
    override = "override"  # set by a committee override


@dataclass(frozen=True)
class Reason:
    """Why a request got what it got, in one sentence plus the facts behind it."""

    code: ReasonCode
    text: str
    level: float | None = None  # effective GPUs per unit of weight when it stopped growing
    node: str | None = None  # the node whose share, limit or guarantee bound it
    pools: tuple[str, ...] = ()  # bottleneck pools
    shortfall: float | None = None  # below_min: GPUs it lacked


@dataclass
class RequestResult:
    id: str
    team: str
    demand: int
    min: int | None
    weight: float  # after priority and urgency
    gpus: dict[str, float]  # pool -> GPUs (whole unless fractional)
    effective: float  # reference-GPU equivalents
    reason: Reason

    @property
    def total(self) -> float:
        return sum(self.gpus.values())


@dataclass
class NodeResult:
    name: str
    parent: str | None
    weight: float
    demand: int
    effective: float
    gpus: dict[str, float]  # GPU type -> GPUs


@dataclass
class PoolResult:
    name: str
    gpu: str
    site: str
    capacity: int
    allocated: float


@dataclass
class Fairness:
    jain_index: float  # over teams' effective / weight; 1 = perfectly even
    least_satisfied_team: str | None
    least_satisfied_share: float | None  # its GPUs / its demand
    below_min: list[str] = field(default_factory=list)


@dataclass
class Stats:
    solve_seconds: float
    lp_solves: int
    levels: int
    groups: int
    min_rounds: int


@dataclass
class Allocation:
    scenario: str
    fractional: bool
    requests: list[RequestResult]
    nodes: list[NodeResult]
    pools: list[PoolResult]
    fairness: Fairness
    stats: Stats

    def request(self, request_id: str) -> RequestResult:
        for r in self.requests:
            if r.id == request_id:
                return r
        raise KeyError(request_id)

    def node(self, name: str) -> NodeResult:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)
