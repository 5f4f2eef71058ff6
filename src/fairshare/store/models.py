"""The tables (SQLAlchemy 2 typed ORM).  Every change to them ships with an Alembic migration.

Rows mirror the scenario model (one pool, one org node, one request) so a round converts to a
`Scenario` and back without a second vocabulary.  Mutable rows carry a `version` column:
an update names the version it read, and a stale one fails instead of overwriting.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, String, Text, TypeDecorator, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

Json = JSON().with_variant(JSONB(), "postgresql")
JsonOrNull = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")  # None is SQL NULL


def utcnow() -> dt.datetime:
    """The service's one clock (row defaults, and the app's default `clock`): aware, in UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware everywhere: SQLite stores naive values, so read them back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: Json, list[Any]: Json, dt.datetime: UTCDateTime()}


class Lab(Base):
    """Lab-wide settings that a scenario file carries besides pools, org and requests."""

    __tablename__ = "lab"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    reference_gpu: Mapped[str | None] = mapped_column(String(100))
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Node(Base):
    __tablename__ = "nodes"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id"), index=True)
    position: Mapped[int] = mapped_column(default=0)  # order among siblings, as in the file
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    guarantee: Mapped[dict[str, Any]] = mapped_column(default=dict)
    limit: Mapped[dict[str, Any]] = mapped_column("limits", default=dict)
    # set when the node (a team that left) is archived: out of the lab's world and of new rounds, still
    # in the frozen worlds of past rounds; an import that names it again brings it back
    archived_at: Mapped[dt.datetime | None]
    version: Mapped[int] = mapped_column(default=1)
    __mapper_args__ = {"version_id_col": version}


class Pool(Base):
    __tablename__ = "pools"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    gpu: Mapped[str] = mapped_column(String(100))
    site: Mapped[str] = mapped_column(String(200))
    gpus: Mapped[int]
    position: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column(default=1)
    __mapper_args__ = {"version_id_col": version}


class Member(Base):
    __tablename__ = "members"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    grants: Mapped[list[Grant]] = relationship(back_populates="member", cascade="all, delete-orphan", lazy="selectin")


class Grant(Base):
    """A role over the subtree rooted at a node."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("member_id", "role", "node_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"))
    member: Mapped[Member] = relationship(back_populates="grants")
    node: Mapped[Node] = relationship(lazy="joined")


class Token(Base):
    """An API token; only its SHA-256 is stored."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]
    member: Mapped[Member] = relationship(lazy="joined")


class Round(Base):
    __tablename__ = "rounds"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    state: Mapped[str] = mapped_column(String(20), default="draft", index=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"))  # whose committee runs it (the root)
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    appeal_window_hours: Mapped[float] = mapped_column(Float, default=14 * 24.0)
    appeal_response_hours: Mapped[float] = mapped_column(Float, default=3 * 24.0)
    published_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    current_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", use_alter=True, name="fk_round_run"))
    # the round's own world (reference GPU, pools, org tree with weights, guarantees and limits), frozen
    # when it closes; None while it is draft or open, when the lab's current world applies
    world: Mapped[dict[str, Any] | None] = mapped_column(JsonOrNull)
    version: Mapped[int] = mapped_column(default=1)
    node: Mapped[Node] = relationship(lazy="joined")
    __mapper_args__ = {"version_id_col": version}


class Request(Base):
    __tablename__ = "requests"
    __table_args__ = (UniqueConstraint("round_id", "key"), Index("ix_requests_round_team", "round_id", "team_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"))
    key: Mapped[str] = mapped_column(String(200))  # the request id of the scenario format
    team_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    gpus: Mapped[int]
    min: Mapped[int | None]
    priority: Mapped[str] = mapped_column(String(20), default="normal")
    launch: Mapped[dt.date | None]
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    speed: Mapped[dict[str, Any] | None] = mapped_column(Json)
    sites: Mapped[list[Any] | None] = mapped_column(Json)
    justification: Mapped[str] = mapped_column(Text, default="")
    withdrawn: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(default=1)
    team: Mapped[Node] = relationship(lazy="joined")
    __mapper_args__ = {"version_id_col": version}


class RequestVersion(Base):
    """Every version of a request, as submitted."""

    __tablename__ = "request_versions"
    __table_args__ = (UniqueConstraint("request_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    version: Mapped[int]
    data: Mapped[dict[str, Any]]
    author: Mapped[str]
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Run(Base):
    """One engine run of a round: its inputs' size, timing and fairness summary."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    trigger: Mapped[str] = mapped_column(String(200))
    solve_seconds: Mapped[float] = mapped_column(Float)
    stats: Mapped[dict[str, Any]]
    fairness: Mapped[dict[str, Any]]
    pools: Mapped[list[Any]]


class RequestResult(Base):
    __tablename__ = "request_results"
    __table_args__ = (Index("ix_request_results_run_team", "run_id", "team"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"))
    key: Mapped[str] = mapped_column(String(200))
    team: Mapped[str] = mapped_column(String(200))
    demand: Mapped[int]
    total: Mapped[int]
    gpus: Mapped[dict[str, Any]]
    effective: Mapped[float] = mapped_column(Float)
    weight: Mapped[float] = mapped_column(Float)
    reason_code: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)
    level: Mapped[float | None] = mapped_column(Float)


class NodeResult(Base):
    """A node's entitlement in one run: what `GET .../entitlements` serves."""

    __tablename__ = "node_results"
    __table_args__ = (UniqueConstraint("run_id", "node"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    node: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]]


class Override(Base):
    __tablename__ = "overrides"
    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), index=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"))
    gpus: Mapped[dict[str, Any]]  # pool -> GPUs
    reason: Mapped[str] = mapped_column(Text)
    author: Mapped[str]
    source: Mapped[str] = mapped_column(String(40), default="committee")  # committee | appeal:<id>
    active: Mapped[bool] = mapped_column(default=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # the node whose committee made it (a committee below may not replace or remove it), the node
    # whose subtree absorbed it, and, once inactive, the override that replaced it and who ended it
    authority: Mapped[str | None] = mapped_column(String(200))
    scope: Mapped[str | None] = mapped_column(String(200))
    replaced_by: Mapped[int | None]
    ended_by: Mapped[str | None] = mapped_column(String(200))


class Appeal(Base):
    __tablename__ = "appeals"
    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), index=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"))
    team: Mapped[str] = mapped_column(String(200))
    author: Mapped[str]
    reason: Mapped[str] = mapped_column(Text)
    asked: Mapped[int]
    current: Mapped[int]  # GPUs the request had when appealed
    state: Mapped[str] = mapped_column(String(20), default="open", index=True)
    handler: Mapped[str] = mapped_column(String(200), index=True)  # node whose committee has it
    deadline: Mapped[dt.datetime]
    escalations: Mapped[int] = mapped_column(default=0)
    ruling_amount: Mapped[int | None]
    ruling_reason: Mapped[str | None] = mapped_column(Text)
    ruled_by: Mapped[str | None]
    ruled_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(default=1)
    __mapper_args__ = {"version_id_col": version}


class AuditEntry(Base):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(100))
    entity: Mapped[str] = mapped_column(String(40), index=True)
    entity_id: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(Json)
    after: Mapped[dict[str, Any] | None] = mapped_column(Json)


class IdempotentResponse(Base):
    """The stored answer to a POST that carried an Idempotency-Key."""

    __tablename__ = "idempotency"
    __table_args__ = (UniqueConstraint("owner", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))  # digest of the caller's token
    key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))  # method, path and body
    status: Mapped[int]  # 0 while the first request with this key is still running
    body: Mapped[dict[str, Any] | None] = mapped_column(Json)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Usage(Base):
    """GPU-hours an org node used of one GPU type in one period, imported from a scheduler's
    accounting (`source`, e.g. "slurm:devcluster").  A re-import replaces the periods it covers."""

    __tablename__ = "usage"
    __table_args__ = (
        UniqueConstraint("source", "node", "gpu", "period_start"),
        Index("ix_usage_node_period", "node", "period_start"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    node: Mapped[str] = mapped_column(String(200))
    gpu: Mapped[str] = mapped_column(String(100))
    period_start: Mapped[dt.datetime]
    period_end: Mapped[dt.datetime]
    gpu_hours: Mapped[float] = mapped_column(Float)
    imported_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
