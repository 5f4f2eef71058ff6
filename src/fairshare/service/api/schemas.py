"""The API's request and response bodies.  Requests themselves are the scenario's `Request`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fairshare.scenario import MAX_WEIGHT, Name, Policy, Priority, Request
from fairshare.workflow import Role, Ruling

T = TypeVar("T")
TEXT_MAX = 10_000  # reasons and other free text
Text = Annotated[str, Field(min_length=1, max_length=TEXT_MAX)]
Count = Annotated[int, Field(ge=0, le=10_000_000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class Problem(BaseModel):
    detail: str


class FieldProblem(BaseModel):
    loc: list[str | int] = Field(description="where: body, query, path or header, then the field path")
    msg: str
    type: str


class Invalid(BaseModel):
    """A 422: FastAPI's per-field list for malformed input, or one sentence naming the fields."""

    detail: str | list[FieldProblem]


# --- org, pools, members --------------------------------------------------------------------


class NodeOut(BaseModel):
    name: str
    parent: str | None
    weight: float
    guarantee: dict[str, int]
    limit: dict[str, int]
    version: int


class PoolOut(BaseModel):
    name: str
    gpu: str
    site: str
    gpus: int
    version: int


class GrantIn(_In):
    role: Role
    node: Name


class GrantOut(BaseModel):
    role: Role
    node: str


class MemberIn(_In):
    name: Name
    email: Annotated[str, Field(max_length=300)] | None = None
    grants: list[GrantIn] = Field(default_factory=list)


class MemberOut(BaseModel):
    name: str
    email: str | None
    grants: list[GrantOut]


class TokenIn(_In):
    label: Annotated[str, Field(max_length=200)] = ""


class TokenOut(BaseModel):
    member: str
    token: str = Field(description="shown once; only its hash is stored")


class ImportOut(BaseModel):
    pools: int
    nodes: int
    requests: int
    kept: list[str] = Field(default_factory=list, description="nodes the file left out, kept (import without prune)")
    archived: list[str] = Field(default_factory=list, description="nodes the file left out, archived (prune)")


class ArchivedOut(BaseModel):
    archived: list[str] = Field(description="the node and its subtree, now archived")


# --- rounds -------------------------------------------------------------------------------------


class RoundIn(_In):
    name: Name
    policy: Policy | None = Field(default=None, description="absent: the lab's default policy")
    date: dt.date | None = Field(
        default=None, description="the round's own date (its policy's date, for urgency); absent: the policy's"
    )
    appeal_window_hours: Annotated[float, Field(gt=0, le=24 * 365)] = 14 * 24.0
    appeal_response_hours: Annotated[float, Field(gt=0, le=24 * 365)] = 3 * 24.0


class RoundOut(BaseModel):
    id: int
    name: str
    state: str
    node: str
    policy: dict[str, Any]
    appeal_window_hours: float
    appeal_response_hours: float
    published_at: dt.datetime | None
    appeal_window_ends: dt.datetime | None
    created_at: dt.datetime
    current_run_id: int | None
    version: int
    next_steps: list[str]


class RunOut(BaseModel):
    id: int
    at: dt.datetime
    trigger: str
    solve_seconds: float
    stats: dict[str, Any]
    fairness: dict[str, Any]
    pools: list[dict[str, Any]]


# --- requests -----------------------------------------------------------------------------------


class RequestUpdate(Request):
    """A new version of a request: the whole request plus the version it was read at."""

    version: Annotated[int, Field(ge=1, description="the version you read; a stale one gets 409")]


class VersionIn(_In):
    version: Annotated[int, Field(ge=1)]


class RequestOut(BaseModel):
    id: int
    round_id: int
    key: str
    team: str
    gpus: int
    min: int | None
    priority: str
    launch: dt.date | None
    weight: float
    speed: dict[str, float] | None
    sites: list[str] | None
    justification: str | None = Field(description="null when you may not see it")
    withdrawn: bool
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


class RequestVersionOut(BaseModel):
    version: int
    data: dict[str, Any]
    author: str
    at: dt.datetime


class AllocationOut(BaseModel):
    request: str
    team: str
    demand: int
    total: int
    gpus: dict[str, int]
    effective: float
    weight: float
    reason_code: str
    reason: str
    level: float | None


class SiblingOut(BaseModel):
    node: str
    weight: float
    demand: int
    gpus: int
    effective: float


class EntitlementOut(BaseModel):
    round_id: int
    round_state: str
    run_id: int
    node: str
    parent: str | None
    weight: float
    gpus: dict[str, int] = Field(description="pool -> GPUs")
    total: int
    demand: int
    effective: float = Field(description="reference-GPU equivalents")
    fair_share: float | None = Field(description="effective GPUs its weight entitles it to among its siblings")
    share_of_fair: float | None = Field(
        description="effective / fair_share; null when it asked for nothing (no demand)"
    )
    reason: str
    reasons: dict[str, int] = Field(description="reason code -> requests in the subtree")
    siblings: list[SiblingOut]

    @model_validator(mode="after")
    def _no_demand(self) -> EntitlementOut:
        """A node that asked for nothing has no demand to measure, not 0% of its share (stored runs too)."""
        if self.demand == 0:
            self.share_of_fair = None
        return self


# --- overrides and appeals ----------------------------------------------------------------------


class OverrideIn(_In):
    request: Name
    gpus: Count | None = Field(default=None, description="total GPUs, spread over the request's pools")
    pools: dict[str, Count] | None = Field(default=None, description="GPUs per pool")
    reason: Text

    @model_validator(mode="after")
    def _one_amount(self) -> OverrideIn:
        if (self.gpus is None) == (self.pools is None):
            raise ValueError("give either gpus (a total) or pools (GPUs per pool), not both or neither")
        return self


class OverrideOut(BaseModel):
    id: int
    request: str
    gpus: dict[str, int]
    reason: str
    author: str
    source: str
    active: bool
    at: dt.datetime
    authority: str | None = Field(default=None, description="the node whose committee made it")
    scope: str | None = Field(default=None, description="the node whose subtree absorbed it")
    replaced_by: int | None = Field(default=None, description="the override that replaced it")
    ended_by: str | None = Field(default=None, description="who replaced or removed it")


class MovedOut(BaseModel):
    kind: str = Field(description="team or request")
    name: str
    gpus_before: int
    gpus_after: int
    gpus_delta: int = Field(description="gained (+) or lost (-)")
    effective_before: float
    effective_after: float
    effective_delta: float


class PreviewOut(BaseModel):
    """A dry run: what the action would change; nothing is saved."""

    dry_run: bool = True
    refused: bool
    reason: str | None = Field(description="why it would be refused (null: it would be made)")
    absorbed_by: str | None = Field(description="the node whose subtree would absorb the change")
    changes: list[MovedOut] = Field(description="teams, then requests, whose GPUs move; biggest moves first")


class AppealIn(_In):
    request: Name
    asked: Annotated[int, Field(gt=0, le=10_000_000, description="GPUs the team asks for")]
    reason: Text


class RulingIn(_In):
    ruling: Ruling
    amount: Count | None = Field(default=None, description="grant: defaults to the amount asked; partial: required")
    reason: Text


class ReappealIn(_In):
    reason: Text


class AppealOut(BaseModel):
    id: int
    round_id: int
    request: str
    team: str
    author: str
    reason: str | None = Field(description="null when you may not see it")
    asked: int
    current: int
    state: str
    handler: str = Field(description="the node whose committee has the appeal now")
    deadline: dt.datetime
    overdue: bool
    escalations: int
    ruling_amount: int | None
    ruling_reason: str | None
    ruled_by: str | None
    ruled_at: dt.datetime | None
    created_at: dt.datetime
    version: int


# --- what-ifs -----------------------------------------------------------------------------------


class WhatIfIn(_In):
    """Changes to try on the round; names it does not have are refused (422)."""

    drop: list[Name] = Field(default_factory=list, max_length=100_000, description="requests to leave out")
    weights: dict[Name, Annotated[float, Field(gt=0, le=MAX_WEIGHT)]] = Field(
        default_factory=dict, description="new weights of org nodes"
    )
    capacity: dict[Name, Count] = Field(default_factory=dict, description="new GPU counts of pools")
    priorities: dict[Name, Priority] = Field(default_factory=dict, description="new priorities of requests")
    new_pools: list[NewPoolIn] = Field(
        default_factory=list, max_length=1_000, description="pools to add; a site no pool has yet adds the site"
    )
    guarantees: dict[Name, dict[Name, Count]] = Field(
        default_factory=dict, description="org node -> GPU type -> its new guarantee (0 removes it)"
    )
    limits: dict[Name, dict[Name, Count]] = Field(
        default_factory=dict, description="org node -> GPU type -> its new limit (0 removes it)"
    )
    minimums: dict[Name, Annotated[int, Field(gt=0, le=10_000_000)] | None] = Field(
        default_factory=dict, description="request -> its new minimum viable size (null: none)"
    )


class NewPoolIn(_In):
    """A pool the what-if adds: a GPU type at a site (new or existing), with its GPUs."""

    name: Name = Field(description="a name no pool of the round has")
    gpu: Name = Field(description="GPU type, e.g. H100")
    site: Name = Field(description="data centre; a new one adds the site")
    gpus: Annotated[int, Field(gt=0, le=10_000_000)] = Field(description="number of GPUs")


class ChangeOut(BaseModel):
    kind: str = Field(description="team or request")
    name: str
    before: float = Field(description="GPUs in the round's current allocation")
    after: float = Field(description="GPUs with the changes")
    delta: float = Field(description="after - before: gained (+) or lost (-)")


class WhatIfOut(BaseModel):
    changes: list[ChangeOut] = Field(description="the teams, then the requests, whose GPUs move; biggest moves first")


class LoserOut(BaseModel):
    team: str
    gpus: float = Field(description="GPUs the team would lose (the request itself left out of its team)")
    effective: float = Field(description="reference-GPU equivalents it would lose")


class LeverOut(BaseModel):
    kind: str = Field(
        description="minimum, request_weight, priority, node_weight, guarantee, limit, capacity, site or gpu_type"
    )
    target: str = Field(description="the request, org node, pool, site or GPU type changed")
    gpu: str | None = Field(description="a guarantee's or limit's GPU type")
    label: str = Field(description="what is changed, in words")
    description: str = Field(description="the change in words (the label alone when it has no effect)")
    before: float | str | None = Field(description="the value now")
    after: float | str | None = Field(description="the smallest change found to give the request more; null: none")
    gain: float = Field(description="GPUs the request would gain")
    effective_gain: float = Field(description="reference-GPU equivalents it would gain")
    funded: bool | None = Field(description="with a minimum: would it be funded")
    losers: list[LoserOut] = Field(description="the teams that would pay most, in effective GPUs (at most 3)")
    searched: str = Field(description="the range tried")
    solves: int = Field(description="re-solves this lever took")


class LeversOut(BaseModel):
    request: str
    team: str
    satisfied: bool = Field(description="it has all it asked for on its fastest type: nothing to search")
    levers: list[LeverOut] = Field(description="levers that give it more, funded first, then biggest gain")
    no_effect: list[LeverOut] = Field(description="levers that gain nothing within what was searched, each once")
    not_searched: list[str] = Field(description="levers the time bound cut off (empty when complete)")
    complete: bool
    solves: int = Field(description="re-solves of the round")
    bound: int = Field(description="the most re-solves the search could take")


class AuditOut(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


# --- copy forward and usage per round ---------------------------------------------------------


class SkippedOut(BaseModel):
    request: str
    team: str
    why: str


class CopiedOut(BaseModel):
    from_round: int = Field(description="the previous round, whose live requests were copied")
    from_round_name: str
    copied: list[RequestOut] = Field(description="the new requests, each at version 1")
    skipped: list[SkippedOut] = Field(description="requests left behind: archived team, id taken, no longer fits")
