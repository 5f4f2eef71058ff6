"""GET entitlements answered before FastAPI's routing when the answer is already kept.

At 200 clients the request machinery (routing, dependency solving, Request objects) cost more CPU
than the answer itself.  This ASGI middleware serves a 200 only when everything the endpoint would
check is already settled: a well-formed path, a kept caller (ActorCache.peek), a fresh stamp of the
round (EntitlementCache.stamp, read from the database as for the endpoint), a visible round and a
kept answer, which the endpoint itself serialised.  Anything else (no or unknown token, a hidden
round, an unknown round or node, an answer not yet kept, a database error) goes on to the app,
which answers it as before, with the same statuses and messages.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import ASGIApp, Receive, Scope, Send

from fairshare import workflow as wf
from fairshare.service.api.deps import ActorCache
from fairshare.service.api.entitlement_cache import EntitlementCache

_MAX_ID = 2**31 - 1  # as RoundId


def bearer_token(scope: Scope) -> str | None:
    """The credentials of the first Authorization header, parsed as HTTPBearer parses them."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, credentials = get_authorization_scheme_param(value.decode("latin-1"))
            return credentials if scheme.lower() == "bearer" and credentials else None
    return None


class FastEntitlements:
    """Serves kept GET entitlements answers; passes everything else to `app`."""

    def __init__(self, app: ASGIApp, state: Any, prefix: str) -> None:
        self.app, self.state = app, state
        self.path = re.compile(re.escape(prefix) + r"/rounds/([1-9][0-9]{0,9})/entitlements/([^/]+)")
        self.route = SimpleNamespace(path=prefix + "/rounds/{round_id}/entitlements/{node}")  # the metrics' label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = None
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            found = self.path.fullmatch(scope["path"])
            if found is not None:
                try:
                    body = await self._kept(int(found[1]), found[2], scope)
                except Exception:  # noqa: BLE001 - the app reads again and answers the error as it should
                    body = None
        if body is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _kept(self, round_id: int, node: str, scope: Scope) -> bytes | None:
        if round_id > _MAX_ID:
            return None
        token = bearer_token(scope)
        actors: ActorCache | None = getattr(self.state, "actor_cache", None)
        actor = actors.peek(token) if token is not None and actors is not None else None
        if actor is None:
            return None
        cache: EntitlementCache = self.state.entitlement_cache
        stamp = await cache.stamp(round_id)
        if stamp is None or stamp[1] is None or not wf.allocation_visible(wf.RoundState(stamp[0]), actor):
            return None
        return cache.kept(round_id, stamp[0], stamp[1], node)
