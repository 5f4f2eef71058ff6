"""The FastAPI application: routes, error mapping, metrics and idempotent POSTs.

Every expected failure becomes a 4xx with a `detail` that says what to do; nothing expected
ever surfaces as a 500, and a failed request leaves the database as it was (one transaction
per request, rolled back on error).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import hashlib
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from sqlalchemy import Engine, delete, select, text
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fairshare import __version__
from fairshare.errors import FairshareError
from fairshare.service.api.entitlement_cache import EntitlementCache
from fairshare.service.api.fast_entitlements import FastEntitlements
from fairshare.service.ops.sync_hooks import hooks_for
from fairshare.settings import Settings, handed_over, load_settings
from fairshare.store import models as m
from fairshare.store.db import check_schema, make_engine, session_factory
from fairshare.store.models import utcnow
from fairshare.store.repo import token_digest

log = logging.getLogger("fairshare.service")
Clock = Callable[[], dt.datetime]
API_PREFIX = "/api/v1"
ABANDONED_CLAIM = dt.timedelta(minutes=10)  # an Idempotency-Key still unanswered after this was never answered


class Metrics:
    """Prometheus series of one app (a registry per app keeps test apps apart)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fairshare_http_requests", "HTTP requests served", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "fairshare_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.solve = Histogram(
            "fairshare_round_solve_seconds",
            "engine time per round solve",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
        )


def create_app(
    database_url: str | None = None,
    *,
    engine: Engine | None = None,
    clock: Clock = utcnow,
    check: bool = True,
    web: bool = True,
    secret: str | None = None,
    secure_cookies: bool = True,
    sync_hooks: list[tuple[str, Any]] | None = None,
    settings: Settings | None = None,
) -> FastAPI:
    """The service on `database_url` (default: the settings' database_url), which must be migrated
    (`fairshare db upgrade`), with the web pages at / unless `web=False`.  `secret` signs the web
    sessions (default: the settings' secret_key); `sync_hooks` push a published allocation into
    schedulers (default: as the settings' sync_on_publish says, see sync_hooks).  `settings`
    default to the environment's FAIRSHARE_* variables (fairshare.settings)."""
    from fairshare.service.api.routes import appeals, audit, health, org, requests, rounds, usage

    settings = settings or load_settings()
    engine = engine or make_engine(database_url or settings.database_url)
    if check:
        check_schema(engine)
    app = FastAPI(
        title="fairshare",
        version=__version__,
        description="Allocation rounds for an AI lab's GPUs: requests, proposals, publication, appeals, audit. "
        "Authenticate with `Authorization: Bearer <token>` (`fairshare token create`).",
        responses={422: {"model": _invalid(), "description": "invalid input; `detail` names each offending field"}},
    )
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.entitlement_cache = EntitlementCache(engine)
    app.state.clock = clock
    app.state.metrics = Metrics()
    app.state.settings = settings
    app.state.sync_hooks = hooks_for(settings) if sync_hooks is None else sync_hooks
    app.state.metrics.registry.register(health.HealthGauges(app.state.sessions, clock))
    routers = (org.router, rounds.router, requests.router, appeals.router, audit.router, usage.router, health.router)
    for router in routers:
        app.include_router(router, prefix=API_PREFIX, responses=_api_errors())
    _install_errors(app)
    _install_middleware(app)
    if web:
        from fairshare.service.web.install import install_web

        install_web(app, secret or settings.secret_key, secure_cookies)

    @app.get("/healthz", tags=["ops"], summary="Liveness and database reachability")
    def healthz() -> dict[str, str]:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        return Response(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def serve_app(engine: Engine | None = None, settings: Settings | None = None) -> FastAPI:
    """create_app() as a server process runs it (`fairshare serve`'s uvicorn factory), on the
    settings `serve` handed over (fairshare.settings), with the garbage collector told to leave
    the start-up objects alone.

    The app, SQLAlchemy, FastAPI and pydantic leave ~150,000 long-lived objects; every full
    collection walks them all (about 100 ms on a busy 2-core machine), stalling every request in
    flight, which was most of the p99 of GET entitlements.  Frozen, they are never walked again.
    Not in create_app: a test process builds many apps, and frozen cycles are never freed."""
    app = create_app(engine=engine, settings=settings or handed_over())
    gc.collect()
    gc.freeze()
    return app


def _problem() -> Any:
    from fairshare.service.api.schemas import Problem

    return Problem


def _map_leaves(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """`value` (JSON-shaped: dicts, lists, leaves) with `leaf` applied to every key and leaf."""
    if isinstance(value, dict):
        return {leaf(k): _map_leaves(v, leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_leaves(v, leaf) for v in value]
    return leaf(value)


def _json_safe(value: Any) -> Any:
    """`value` with NaN and infinities spelled as strings."""
    return _map_leaves(value, lambda v: str(v) if isinstance(v, float) and not math.isfinite(v) else v)


def _readable_errors(errors: Sequence[Any]) -> list[Any]:
    """pydantic's errors, each input made printable: a body sent without a JSON content type
    arrives as raw bytes, which need not be UTF-8 (jsonable_encoder would fail on them)."""
    out = []
    for err in errors:
        raw = err.get("input") if isinstance(err, dict) else None
        if isinstance(raw, (bytes, bytearray)):
            err = {
                **err,
                "input": bytes(raw[:200]).decode("utf-8", "replace"),
                "msg": f"{err.get('msg', 'invalid body')}; send a JSON object with Content-Type: application/json",
            }
        out.append(err)
    return out


def _invalid() -> Any:
    from fairshare.service.api.schemas import Invalid

    return Invalid


def _api_errors() -> dict[int | str, dict[str, Any]]:
    """The failures every API route may answer with, each a `Problem`, so clients and the schema know them."""
    return {
        status: {"model": _problem(), "description": text}
        for status, text in (
            (400, "the body cannot be read (not UTF-8)"),
            (401, "missing or unknown token"),
            (403, "your roles do not cover this here"),
            (404, "no such thing"),
            (409, "not legal in the current state, or a stale or duplicate write"),
            (503, "the database or the solver is unavailable; retry shortly"),
        )
    }


def _on_a_page(request: Request) -> bool:
    """Is this a web page's request (the pages are installed and it is not the API's)?"""
    return getattr(request.app.state, "html_error", None) is not None and not request.url.path.startswith(API_PREFIX)


def _answer(request: Request, status: int, detail: Any) -> Response:
    """An error as the caller reads it: an HTML error page on a web page, JSON
    `{"detail": ...}` on the API."""
    if _on_a_page(request):
        return request.app.state.html_error(request, status, detail if isinstance(detail, str) else _in_words(detail))
    return JSONResponse({"detail": detail}, status_code=status)


def _in_words(errors: list[Any]) -> str:
    """pydantic's errors as one sentence for a page: `round_id: Input should be a valid integer`."""
    return (
        "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'input'}: {e.get('msg', 'invalid')}"
            for e in errors
            if isinstance(e, dict)
        )
        or "the request is not valid"
    )


def _install_errors(app: FastAPI) -> None:
    async def fairshare_error(request: Request, exc: Exception) -> Response:
        """Every error fairshare raises on purpose carries its status (fairshare.errors)."""
        assert isinstance(exc, FairshareError)
        return _answer(request, exc.http_status, str(exc))

    app.add_exception_handler(FairshareError, fairshare_error)

    async def stale(request: Request, exc: Exception) -> Response:
        return _answer(request, 409, "someone else changed this since you read it; re-read it and retry")

    async def integrity(request: Request, exc: Exception) -> Response:
        log.info("integrity error: %s", exc)
        return _answer(
            request,
            409,
            "conflicts with what is stored (a duplicate name or id, or a reference to "
            "something missing); change the name or id and retry",
        )

    async def unavailable(request: Request, exc: Exception) -> Response:
        log.warning("database error: %s", exc)
        return _answer(request, 503, "the database is unavailable or busy; retry shortly")

    async def unstorable(request: Request, exc: Exception) -> Response:
        # PostgreSQL refuses NUL characters in text and integers beyond 32 bits; SQLite ints beyond 64 bits
        why = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return _answer(
            request,
            422,
            f"a value in the request cannot be stored or looked up ({why}); send text "
            "without NUL characters and numbers in range",
        )

    app.add_exception_handler(StaleDataError, stale)
    app.add_exception_handler(IntegrityError, integrity)
    app.add_exception_handler(OperationalError, unavailable)
    app.add_exception_handler(PoolTimeout, unavailable)  # every pooled connection stayed busy for 30 s
    app.add_exception_handler(DataError, unstorable)
    app.add_exception_handler(OverflowError, unstorable)

    async def invalid(request: Request, exc: Exception) -> Response:
        # FastAPI's own handler echoes each bad input and fails (a 500) on NaN or Infinity, which JSON cannot carry
        assert isinstance(exc, RequestValidationError)
        return _answer(request, 422, _json_safe(jsonable_encoder(_readable_errors(exc.errors()))))

    async def http_error(request: Request, exc: Exception) -> Response:
        # no such page (404) or method (405): a page on the web, FastAPI's JSON on the API
        assert isinstance(exc, StarletteHTTPException)
        if _on_a_page(request):
            return _answer(request, exc.status_code, str(exc.detail))
        return await http_exception_handler(request, exc)

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _install_middleware(app: FastAPI) -> None:
    metrics: Metrics = app.state.metrics

    async def idempotency(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        key = request.headers.get("idempotency-key")
        auth = request.headers.get("authorization")
        if request.method != "POST" or not key or not auth:
            return await call_next(request)
        if len(key) > 200:
            return JSONResponse({"detail": "Idempotency-Key is longer than 200 characters"}, status_code=422)
        body = await request.body()
        owner = token_digest(auth)
        fingerprint = hashlib.sha256(
            b"|".join([request.method.encode(), request.url.path.encode(), request.url.query.encode(), body])
        ).hexdigest()
        seen = await run_in_threadpool(_claim_key, app, owner, key, fingerprint)
        if seen is not None:
            return seen
        try:
            response = await call_next(request)
            chunks = [c async for c in response.body_iterator]  # type: ignore[attr-defined]
        except BaseException:  # an unhandled error (a 500): the caller may retry with the same key
            await run_in_threadpool(_settle_key, app, owner, key, 500, b"")
            raise
        payload = b"".join(chunks)
        await run_in_threadpool(_settle_key, app, owner, key, response.status_code, payload)
        return Response(
            payload, status_code=response.status_code, headers=dict(response.headers), media_type=response.media_type
        )

    app.add_middleware(FastEntitlements, state=app.state, prefix=API_PREFIX)
    app.add_middleware(_KeyedPostsOnly, dispatch=idempotency)
    app.add_middleware(_Admission, limit=_pool_capacity(app.state.engine))

    async def measure(scope: Scope, receive: Receive, send: Send, inner: ASGIApp) -> None:
        start = time.perf_counter()
        status = 500  # unless the app answers

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await inner(scope, receive, send_status)
        finally:
            path = _route_label(scope)
            metrics.requests.labels(scope["method"], path, str(status)).inc()
            metrics.latency.labels(scope["method"], path).observe(time.perf_counter() - start)

    app.add_middleware(_HTTPOnly, handle=measure)


class _HTTPOnly:
    """Plain ASGI middleware: `handle(scope, receive, send, inner)` for HTTP requests.  Cheaper than
    `@app.middleware("http")` (BaseHTTPMiddleware), which costs every request a task and a stream."""

    def __init__(self, app: ASGIApp, handle: Callable[[Scope, Receive, Send, ASGIApp], Awaitable[None]]) -> None:
        self.app, self.handle = app, handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        else:
            await self.handle(scope, receive, send, self.app)


def _pool_capacity(engine: Engine) -> int | None:
    """How many connections the engine's pool can lend at once (None: no fixed bound)."""
    size, overflow = getattr(engine.pool, "size", None), getattr(engine.pool, "_max_overflow", None)
    if not callable(size) or not isinstance(overflow, int) or overflow < 0:
        return None
    return max(1, size() + overflow)


class _Admission:
    """At most `limit` requests inside the app at once; the rest wait here, holding nothing.

    A request holds its database session across several thread-pool hops (dependencies, the
    endpoint, the session's close).  With more requests in flight than the pool has connections,
    the requests holding connections wait for threads while the threads wait for connections, until
    the pool's 30 s timeout turns them into errors.  Keeping the number in flight at or below the
    pool's size means every admitted request can get its connection."""

    def __init__(self, app: ASGIApp, limit: int | None) -> None:
        self.app, self.limit = app, limit
        self.gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.limit is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        gate = self.gates.get(loop)
        if gate is None:
            gate = self.gates[loop] = asyncio.Semaphore(self.limit)
        async with gate:
            await self.app(scope, receive, send)


def _holds_secrets(path: str) -> bool:
    """A new token's answer is never stored (only tokens' hashes are), so token creation is not replayed."""
    return path.endswith("/tokens")


class _KeyedPostsOnly:
    """Runs `dispatch` (as `@app.middleware("http")` would) only for POSTs that carry an
    Idempotency-Key; every other request goes straight to the app."""

    def __init__(
        self, app: ASGIApp, dispatch: Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]
    ) -> None:
        self.app = app
        self.keyed = BaseHTTPMiddleware(app, dispatch=dispatch)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and not _holds_secrets(scope["path"])
            and any(k == b"idempotency-key" for k, _ in scope["headers"])
        ):
            await self.keyed(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _route_label(scope: Scope) -> str:
    """The matched route's path template (bounded label values for Prometheus)."""
    path = getattr(scope.get("route"), "path", None)
    if path is None:
        return "unmatched"
    if scope["path"].startswith(API_PREFIX) and not path.startswith(API_PREFIX):
        path = API_PREFIX + path  # routers included under the prefix report their own paths
    return path


def _claim_key(app: FastAPI, owner: str, key: str, fingerprint: str) -> Response | None:
    """Reserve the key, or answer with the stored response (or a conflict) if it is taken."""
    import json

    with app.state.sessions() as session:
        session.add(m.IdempotentResponse(owner=owner, key=key, fingerprint=fingerprint, status=0, body=None))
        try:
            session.commit()
            return None
        except IntegrityError:
            session.rollback()
        row = session.scalars(
            select(m.IdempotentResponse).where(m.IdempotentResponse.owner == owner, m.IdempotentResponse.key == key)
        ).first()
    if row is None:  # removed after a failed first attempt: let this one run
        return _claim_key(app, owner, key, fingerprint)
    if row.fingerprint != fingerprint:
        return JSONResponse(
            {"detail": "this Idempotency-Key was used for a different request; use a new key"}, status_code=422
        )
    if row.status == 0 and utcnow() - row.at > ABANDONED_CLAIM:  # its server stopped before it answered
        with app.state.sessions() as session:
            session.execute(
                delete(m.IdempotentResponse).where(m.IdempotentResponse.id == row.id, m.IdempotentResponse.status == 0)
            )
            session.commit()
        return _claim_key(app, owner, key, fingerprint)
    if row.status == 0:
        return JSONResponse(
            {"detail": "a request with this Idempotency-Key is still running; retry shortly"}, status_code=409
        )
    return Response(
        json.dumps(row.body).encode(),
        status_code=row.status,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


def _without_nul(value: Any) -> Any:
    """`value` with NUL characters replaced: PostgreSQL's JSONB refuses them, and a 422 may
    echo them from the bad input it refuses."""
    return _map_leaves(value, lambda v: v.replace("\x00", "\ufffd") if isinstance(v, str) else v)


def _settle_key(app: FastAPI, owner: str, key: str, status: int, payload: bytes) -> None:
    """Store a final answer; forget the key after an error the caller may retry (5xx, 401, 409)."""
    import json

    with app.state.sessions() as session:
        where = (m.IdempotentResponse.owner == owner, m.IdempotentResponse.key == key)
        if status >= 500 or status in (401, 409):
            session.execute(delete(m.IdempotentResponse).where(*where))
        else:
            row = session.scalars(select(m.IdempotentResponse).where(*where)).first()
            if row is not None:
                row.status = status
                try:
                    row.body = _without_nul(json.loads(payload)) if payload else None
                except ValueError:
                    row.body = None
        session.commit()
