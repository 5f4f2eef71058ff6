"""The scenario: one validated, typed description of an allocation problem.

Every layer (CLI, service, simulator, connectors) reads and writes this one model; nothing
else describes a team, a pool or a request.  Validation errors carry the field path so the
loader can point at the offending line of the file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from enum import Enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fairshare.errors import UserError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
NAME_MAX = 200  # the database's name columns hold this many characters
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
MAX_GPUS = 10_000_000  # bounds keep the solver's numbers sane; no lab is near them
MAX_WEIGHT = 1e6
MAX_SPREAD = 1e5  # the widest ratio of sibling weights, or of speeds, that the LPs solve reliably
GpuCounts = dict[str, Annotated[int, Field(ge=0, le=MAX_GPUS)]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # JSON has no inf or nan


class Priority(str, Enum):
    low = "low"
    normal = "normal"
    high = "high"
    critical = "critical"


class Pool(_Strict):
    """Capacity: one GPU type at one site."""

    name: Name
    gpu: Name = Field(description="GPU type, e.g. H100")
    site: Name = Field(default="default", description="data centre")
    gpus: Annotated[int, Field(ge=0, le=MAX_GPUS, description="number of GPUs in the pool")]


class NodeHistory(_Strict):
    """How a node fared over past rounds (docs/health.md): the input of `policy.history`'s boost.
    The service computes it from its published rounds; a scenario file may state it."""

    debt: Annotated[float, Field(ge=-MAX_GPUS, le=MAX_GPUS)] = Field(
        default=0.0, description="effective GPUs owed: fair share minus received, halved every half-life"
    )
    fair_share: Annotated[float, Field(gt=0, le=MAX_GPUS)] = Field(
        description="its fair share in the latest round, effective GPUs (the unit of its debt)"
    )
    share_of_fair: Annotated[float, Field(ge=0, le=MAX_WEIGHT)] | None = Field(
        default=None, description="received / fair share over the rounds counted (for the reason)"
    )
    rounds: Annotated[int, Field(ge=0, le=10_000)] = Field(default=0, description="the rounds counted")


class OrgNode(_Strict):
    """A node of the organisation tree (an org, a group, a team)."""

    name: Name
    weight: Annotated[float, Field(gt=0, le=MAX_WEIGHT)] = 1.0
    guarantee: GpuCounts = Field(default_factory=dict, description="floor of GPUs per type")
    limit: GpuCounts = Field(default_factory=dict, description="cap of GPUs per type")
    children: list[OrgNode] = Field(default_factory=list)
    history: NodeHistory | None = Field(default=None, description="past rounds, for policy.history")

    def walk(self) -> Iterator[OrgNode]:
        """Pre-order traversal (parents before children, siblings in file order)."""
        yield self
        for child in self.children:
            yield from child.walk()


class Request(_Strict):
    """What a team asks for."""

    id: Name
    team: Name
    gpus: Annotated[int, Field(gt=0, le=MAX_GPUS, description="at most this many GPUs at once")]
    speed: dict[str, Annotated[float, Field(gt=0, le=MAX_WEIGHT)]] | None = Field(
        default=None,
        description="throughput per GPU type relative to the reference GPU; "
        "types not listed cannot be used; absent = every type at speed 1",
    )
    min: Annotated[int, Field(gt=0, le=MAX_GPUS)] | None = Field(default=None, description="minimum viable size")
    priority: Priority = Priority.normal
    launch: dt.date | None = None
    weight: Annotated[float, Field(gt=0, le=MAX_WEIGHT)] = 1.0
    sites: list[Name] | None = Field(default=None, description="allowed sites; absent = all")
    justification: Annotated[str, Field(max_length=20_000)] | None = None  # a few pages of text

    def may_run_on(self, gpu: str, site: str) -> bool:
        """The one rule for where a request may run: a GPU type it lists a speed for (any type
        when it lists none) at a site it allows (any site when it lists none).  Capacity is not
        part of it: a pool with no GPUs is still one the request could use once it has some."""
        return (self.speed is None or gpu in self.speed) and (self.sites is None or site in self.sites)

    @model_validator(mode="after")
    def _min_within_gpus(self) -> Request:
        if self.min is not None and self.min > self.gpus:
            raise ValueError(f"min ({self.min}) is above gpus ({self.gpus}); lower min or raise gpus")
        return self


class Sharing(str, Enum):
    """policy.sharing: what weights divide (docs/scenario.md#sharing)."""

    total = "total"
    surplus = "surplus"


class Normalize(str, Enum):
    """policy.normalize: the unit of a request's throughput (docs/scenario.md#normalize)."""

    reference = "reference"
    equal_share = "equal_share"


class History(_Strict):
    """Carry a node's debt into the next round (opt-in): its weight rises by boost_per_debt per
    round's worth of fair share it is owed, never above max_boost."""

    boost_per_debt: Annotated[float, Field(ge=0, le=100)] = 0.5
    max_boost: Annotated[float, Field(ge=1, le=10)] = 1.5


class Urgency(_Strict):
    horizon_days: Annotated[float, Field(gt=0, le=3650)] = 90.0
    max_boost: Annotated[float, Field(ge=1, le=1000)] = 2.0


def _default_priority_weights() -> dict[Priority, float]:
    return {Priority.low: 0.5, Priority.normal: 1.0, Priority.high: 2.0, Priority.critical: 4.0}


class Policy(_Strict):
    date: dt.date | None = Field(default=None, description="the round's date; no date = no urgency")
    priority_weights: dict[Priority, Annotated[float, Field(gt=0, le=MAX_WEIGHT)]] = Field(
        default_factory=_default_priority_weights
    )
    urgency: Urgency = Field(default_factory=Urgency)
    history: History | None = Field(default=None, description="carry debt into weights; absent = off")
    placement_slack: Annotated[float, Field(ge=0, le=0.5)] = Field(
        default=0.02,
        description="the most of its own effective GPUs (a fraction) a node may give up so that the requests "
        "below it can run where they can; 0 = strict",
    )
    sharing: Sharing = Field(
        default=Sharing.total,
        description="how siblings share their parent's GPUs: total = weights apply to the whole and a guarantee "
        "is a floor; surplus = each node first gets its guarantee, then only what is above the guarantees is "
        "shared by weight (Kueue's fair sharing, KAI's over-quota weights)",
    )
    normalize: Normalize = Field(
        default=Normalize.reference,
        description="what a request's throughput is measured against: reference = its speeds as given (relative "
        "to reference_gpu); equal_share = its throughput on an equal share of the cluster (Gavel's normalisation)",
    )

    @field_validator("priority_weights")
    @classmethod
    def _fill_missing(cls, value: dict[Priority, float]) -> dict[Priority, float]:
        return {**_default_priority_weights(), **value}


class Scenario(_Strict):
    """One allocation problem: capacity, the organisation, the requests, the policy."""

    name: Name
    reference_gpu: Name | None = Field(default=None, description="the type with speed 1.0")
    pools: list[Pool] = Field(min_length=1)
    org: OrgNode
    requests: list[Request] = Field(default_factory=list)
    policy: Policy = Field(default_factory=Policy)

    @property
    def gpu_types(self) -> list[str]:
        """GPU types in order of first appearance among the pools."""
        return list(dict.fromkeys(p.gpu for p in self.pools))

    @property
    def sites(self) -> list[str]:
        return list(dict.fromkeys(p.site for p in self.pools))

    def nodes(self) -> list[OrgNode]:
        return list(self.org.walk())

    def usable_pools(self, request: Request) -> list[Pool]:
        """The pools `request` may run on (Request.may_run_on), in file order."""
        return [p for p in self.pools if request.may_run_on(p.gpu, p.site)]

    @model_validator(mode="after")
    def _check_references(self) -> Scenario:
        errors: list[tuple[tuple[str | int, ...], str]] = []
        types, sites = set(self.gpu_types), set(self.sites)
        _unique([p.name for p in self.pools], ("pools",), "pool name", errors)
        if self.reference_gpu is not None and self.reference_gpu not in types:
            errors.append(
                ((("reference_gpu",)), f"unknown GPU type {self.reference_gpu!r}; pools have {sorted(types)}")
            )
        node_names = _check_tree(self.org, ("org",), types, errors)
        _unique([r.id for r in self.requests], ("requests",), "request id", errors, key="id")
        for i, req in enumerate(self.requests):
            errors += request_reference_errors(req, node_names, types, sites, ("requests", i))
        if not errors:
            errors += self._spread_errors()
        if errors:
            raise ScenarioError(errors)
        return self

    def _spread_errors(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Weights among siblings, and speeds across the lab, may span at most a factor of
        MAX_SPREAD: wider, and the LP's coefficients are beyond HiGHS's precision (a weight of
        1e-6 beside 1e6 made it stop with "unbounded" on a one-GPU lab)."""
        errors: list[tuple[tuple[str | int, ...], str]] = []
        on_node: dict[str, list[tuple[str, float, tuple[str | int, ...]]]] = {}
        for i, req in enumerate(self.requests):
            on_node.setdefault(req.team, []).append(
                (f"request {req.id!r}", request_weight(req, self.policy), ("requests", i, "weight"))
            )
        stack: list[tuple[OrgNode, tuple[str | int, ...]]] = [(self.org, ("org",))]
        while stack:
            node, loc = stack.pop()
            kids = [
                (f"node {c.name!r}", c.weight, loc + ("children", k, "weight")) for k, c in enumerate(node.children)
            ]
            kids += on_node.get(node.name, [])
            if len(kids) > 1:
                low, high = min(kids, key=lambda k: k[1]), max(kids, key=lambda k: k[1])
                if high[1] > low[1] * MAX_SPREAD:
                    errors.append(
                        (
                            low[2],
                            f"among the children of {node.name!r}, {low[0]} weighs {low[1]:g} and "
                            f"{high[0]} {high[1]:g} (after priority and urgency): more than {MAX_SPREAD:,.0f} "
                            "times apart, beyond the solver's precision; bring them closer",
                        )
                    )
            stack.extend((c, loc + ("children", k)) for k, c in enumerate(node.children))
        speeds = [(v, i, t) for i, r in enumerate(self.requests) for t, v in (r.speed or {}).items()]
        if speeds:
            low_s, high_s = min(speeds), max(speeds)
            if high_s[0] > low_s[0] * MAX_SPREAD:
                errors.append(
                    (
                        ("requests", low_s[1], "speed", low_s[2]),
                        f"speed {low_s[0]:g} here and {high_s[0]:g} for request "
                        f"{self.requests[high_s[1]].id!r} are more than {MAX_SPREAD:,.0f} times apart, beyond "
                        "the solver's precision; speeds are relative to one reference GPU",
                    )
                )
        return errors


def request_reference_errors(
    req: Request, node_names: set[str], types: set[str], sites: set[str], where: tuple[str | int, ...] = ()
) -> list[tuple[tuple[str | int, ...], str]]:
    """A request's references that point nowhere: its team, the GPU types of its speeds, its sites.
    Shared by scenario files and by requests submitted one at a time to the service."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    if req.team not in node_names:
        errors.append(
            (where + ("team",), f"unknown team {req.team!r}; add it to org or use one of {sorted(node_names)[:8]}")
        )
    for gpu in req.speed or {}:
        if gpu not in types:
            errors.append((where + ("speed", gpu), f"speed for unknown GPU type {gpu!r}; pools have {sorted(types)}"))
    for k, site in enumerate(req.sites or []):
        if site not in sites:
            errors.append((where + ("sites", k), f"unknown site {site!r}; pools are at {sorted(sites)}"))
    return errors


class ScenarioError(UserError, ValueError):
    """Cross-reference errors, each with the field path it concerns."""

    def __init__(self, errors: list[tuple[tuple[str | int, ...], str]]):
        self.errors = errors
        super().__init__("; ".join(f"{_path(loc)}: {msg}" if loc else msg for loc, msg in errors))


def _path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unique(
    values: list[str],
    where: tuple[str | int, ...],
    what: str,
    errors: list[tuple[tuple[str | int, ...], str]],
    key: str = "name",
) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            errors.append((where + (i, key), f"duplicate {what} {v!r}; every {what} must be unique"))
        seen.add(v)


def _check_tree(
    root: OrgNode, where: tuple[str | int, ...], types: set[str], errors: list[tuple[tuple[str | int, ...], str]]
) -> set[str]:
    """Unique names, known GPU types; returns all node names."""
    names: set[str] = set()
    seen_ids: set[int] = set()
    stack: list[tuple[OrgNode, tuple[str | int, ...]]] = [(root, where)]
    while stack:
        node, loc = stack.pop()
        if id(node) in seen_ids:  # a YAML alias that reuses a subtree
            errors.append((loc, f"node {node.name!r} appears twice in the tree (a cycle or a repeated alias)"))
            continue
        seen_ids.add(id(node))
        if node.name in names:
            errors.append((loc + ("name",), f"duplicate node name {node.name!r}; every node must have a unique name"))
        names.add(node.name)
        for field in ("guarantee", "limit"):
            for gpu in getattr(node, field):
                if gpu not in types:
                    errors.append((loc + (field, gpu), f"unknown GPU type {gpu!r}; pools have {sorted(types)}"))
        for gpu, g in node.guarantee.items():
            if gpu in node.limit and g > node.limit[gpu]:
                errors.append(
                    (loc + ("guarantee", gpu), f"guarantee {g} is above the node's own limit {node.limit[gpu]}")
                )
        for i, child in reversed(list(enumerate(node.children))):
            stack.append((child, loc + ("children", i)))
    return names


def guarantee_bases(root: OrgNode, types: list[str]) -> dict[str, dict[str, int]]:
    """Each node's base per GPU type under policy.sharing surplus: its guarantee, or the sum of its
    children's bases if larger (a Kueue cohort's quota includes its queues' quotas)."""
    out: dict[str, dict[str, int]] = {}

    def visit(node: OrgNode) -> dict[str, int]:
        below = [visit(c) for c in node.children]
        out[node.name] = {t: max(node.guarantee.get(t, 0), sum(b[t] for b in below)) for t in types}
        return out[node.name]

    visit(root)
    return out


def request_weight(req: Request, policy: Policy) -> float:
    """Weight used by the engine: weight x priority weight x urgency (see docs/scenario.md)."""
    return req.weight * policy.priority_weights[req.priority] * urgency(req, policy)


def history_boost(node: OrgNode, policy: Policy) -> float:
    """The factor on a node's weight from its debt (docs/health.md): 1 unless policy.history is on
    and the node is owed GPUs; 1 + boost_per_debt x debt / fair share, at most max_boost."""
    if policy.history is None or node.history is None or node.history.debt <= 0:
        return 1.0
    owed = node.history.debt / node.history.fair_share
    return min(policy.history.max_boost, 1.0 + policy.history.boost_per_debt * owed)


def urgency(req: Request, policy: Policy) -> float:
    """1 far from launch, rising linearly to max_boost at launch; stays at max_boost after it."""
    if req.launch is None or policy.date is None:
        return 1.0
    days = (req.launch - policy.date).days
    closeness = min(max(1.0 - days / policy.urgency.horizon_days, 0.0), 1.0)
    return 1.0 + (policy.urgency.max_boost - 1.0) * closeness
