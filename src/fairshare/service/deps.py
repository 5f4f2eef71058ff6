"""FastAPI dependencies: a database session per request, the caller, the clock, paging."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Iterator

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from fairshare import workflow as wf
from fairshare.store.repo import actor_of, member_by_token, org_tree

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


def get_ctx(request: Request, session: Annotated[Session, Depends(get_session)],
            creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Ctx:
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token; send 'Authorization: Bearer <token>' "
                                 "(create one with `fairshare token create`)", headers={"WWW-Authenticate": "Bearer"})
    member = member_by_token(session, creds.credentials)
    if member is None:
        raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return Ctx(session, actor_of(member), request.app.state.clock())


CtxDep = Annotated[Ctx, Depends(get_ctx)]


@dataclass
class Paging:
    limit: int
    offset: int


def get_paging(limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
               offset: Annotated[int, Query(ge=0, le=10_000_000, description="items to skip")] = 0) -> Paging:
    return Paging(limit, offset)


PagingDep = Annotated[Paging, Depends(get_paging)]


Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
RoundId = Annotated[int, Path(ge=1, le=2**31 - 1, description="round id")]
