"""FastAPI dependencies: a database session per request, the caller, the clock, paging."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import event
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.store import models as m
from fairshare.store.repo import actor_by_token, org_tree, token_digest

bearer = HTTPBearer(auto_error=False, description="an API token from `fairshare token create`")


def get_session(request: Request) -> Iterator[Session]:
    """One session per HTTP request; committed by the endpoint, rolled back on any error."""
    session = request.app.state.sessions()
    try:
        yield session
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


@dataclass
class Ctx:
    """Everything an endpoint needs about the call: session, caller, time."""

    session: Session
    actor: wf.Actor
    now: dt.datetime

    @cached_property
    def tree(self) -> wf.OrgTree:
        return org_tree(self.session)


class ActorCache:
    """Who a token belongs to, kept for `ttl` seconds so that most requests skip the lookup.

    Forgotten at once whenever this process commits a change to members, grants or tokens; a
    change made by another process (another uvicorn worker, the CLI) is seen within `ttl`
    seconds.  Unknown tokens are never kept, so a new token works at once everywhere.
    The settings' token_cache_seconds (FAIRSHARE_TOKEN_CACHE_SECONDS) set `ttl` (default 5; 0 turns the cache off)."""

    generation = 0  # bumped by every commit that touches members, grants or tokens

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.entries: dict[str, tuple[wf.Actor, float, int]] = {}

    def peek(self, token: str) -> wf.Actor | None:
        """The kept caller of `token`, if it is still good (no database access)."""
        if self.ttl <= 0:
            return None
        hit = self.entries.get(token_digest(token))
        if hit is not None and hit[1] > time.monotonic() and hit[2] == ActorCache.generation:
            return hit[0]
        return None

    def lookup(self, session: Session, token: str) -> wf.Actor | None:
        if self.ttl <= 0:
            return actor_by_token(session, token)
        hit = self.peek(token)
        if hit is not None:
            return hit
        digest, now, generation = token_digest(token), time.monotonic(), ActorCache.generation
        actor = actor_by_token(session, token)
        if actor is not None:
            if len(self.entries) > 10_000:
                self.entries.clear()
            self.entries[digest] = (actor, now + self.ttl, generation)
        return actor


_ACCESS = (m.Member, m.Grant, m.Token)


@event.listens_for(Session, "after_flush")
def _note_access_change(session: Session, _: Any) -> None:
    if any(isinstance(o, _ACCESS) for o in chain(session.new, session.dirty, session.deleted)):
        session.info["fairshare_access_changed"] = True


@event.listens_for(Session, "after_commit")
def _forget_actors(session: Session) -> None:
    if session.info.pop("fairshare_access_changed", False):
        ActorCache.generation += 1


@event.listens_for(Session, "after_rollback")
def _keep_actors(session: Session) -> None:
    session.info.pop("fairshare_access_changed", None)


def actor_cache(request: Request) -> ActorCache:
    cache = getattr(request.app.state, "actor_cache", None)
    if cache is None:
        cache = request.app.state.actor_cache = ActorCache(request.app.state.settings.token_cache_seconds)
    return cache


def _bearer_token(creds: HTTPAuthorizationCredentials | None) -> str:
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(
            401,
            "missing bearer token; send 'Authorization: Bearer <token>' (create one with `fairshare token create`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return creds.credentials


def _known(actor: wf.Actor | None) -> wf.Actor:
    if actor is None:
        raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return actor


def get_ctx(
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Ctx:
    actor = _known(actor_cache(request).lookup(session, _bearer_token(creds)))
    return Ctx(session, actor, request.app.state.clock())


CtxDep = Annotated[Ctx, Depends(get_ctx)]


def _lookup_in_session(request: Request, token: str) -> wf.Actor | None:
    with request.app.state.sessions() as session:
        return actor_cache(request).lookup(session, token)


async def get_actor(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> wf.Actor:
    """The caller, as get_ctx finds it, for async endpoints: a kept caller costs no thread hop and no
    session; otherwise the lookup runs in the thread pool on a session of its own."""
    token = _bearer_token(creds)
    actor = actor_cache(request).peek(token)
    if actor is None:
        actor = await run_in_threadpool(_lookup_in_session, request, token)
    return _known(actor)


ActorDep = Annotated[wf.Actor, Depends(get_actor)]


@dataclass
class Paging:
    limit: int
    offset: int


def get_paging(
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="items to skip")] = 0,
) -> Paging:
    return Paging(limit, offset)


PagingDep = Annotated[Paging, Depends(get_paging)]


Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
RoundId = Annotated[int, Path(ge=1, le=2**31 - 1, description="round id")]
