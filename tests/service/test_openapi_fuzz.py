"""Schemathesis against the service's own /openapi.json: whatever a client sends, the answer is
never a 5xx, its status code is documented, and its body matches the documented schema.

One database per backend for the module, seeded with the small lab and a round in every state
(published with an appeal, proposed with an override, open, draft), so that small ids reach
real rows rather than only 404s.  The fuzzer changes that state as it goes (imports, new
rounds, steps, withdrawals); that is part of the point.  Examples per operation are bounded and
the seed is fixed, so the file is reproducible and quick; set FAIRSHARE_FUZZ_SEED to explore
other inputs.  PostgreSQL runs when FAIRSHARE_TEST_DATABASE_URL is set (it refuses inputs
SQLite stores, e.g. NUL characters and integers beyond 32 bits).

A bounded run rarely draws those rare inputs (a NUL, a 2**70), so the ones that gave 500s are
pinned in HOSTILE at the end, on both backends.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig
from tests.service.conftest import Clock, _pg_engine, seed

from fairshare.service.api.app import create_app
from fairshare.store.db import make_engine, upgrade

SEED = int(os.environ.get("FAIRSHARE_FUZZ_SEED", "20261101"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
# The coverage phase (every boundary of every parameter) takes minutes on this API; HOSTILE below pins the
# boundaries that broke it.
CONFIG = SchemathesisConfig.from_dict({"seed": SEED, "phases": {"coverage": {"enabled": False}}})
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))


def seeded_app(engine: Any) -> tuple[FastAPI, dict[str, str]]:
    """The small lab on `engine`, with rounds 1..4: published (with an appeal), proposed (with an
    override), open, draft; each non-draft round holds a request from llama, opt and genai."""
    tokens = seed(engine)
    app = create_app(engine=engine, clock=Clock())
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    lead = {"Authorization": f"Bearer {tokens['llama-lead']}"}
    with TestClient(app, base_url="http://testserver/api/v1") as c:

        def ok(r: Any) -> Any:
            assert r.status_code < 300, r.text
            return r.json()

        for name, steps in (
            ("published", ("open", "close", "propose", "publish")),
            ("proposed", ("open", "close", "propose")),
            ("open", ("open",)),
            ("draft", ()),
        ):
            rid = ok(c.post("/rounds", headers=admin, json={"name": name}))["id"]
            if steps:
                ok(c.post(f"/rounds/{rid}/open", headers=admin))
                for team, gpus in (("llama", 150), ("opt", 120), ("genai", 100)):
                    ok(
                        c.post(
                            f"/rounds/{rid}/requests",
                            headers=admin,
                            json={
                                "id": f"{team}-1",
                                "team": team,
                                "gpus": gpus,
                                "min": 8,
                                "priority": "high",
                                "speed": {"H100": 2.0, "A100": 1.0},
                                "justification": "why",
                            },
                        )
                    )
            for step in steps[1:]:
                ok(c.post(f"/rounds/{rid}/{step}", headers=admin))
            if name == "published":
                ok(
                    c.post(
                        f"/rounds/{rid}/appeals",
                        headers=lead,
                        json={"request": "llama-1", "asked": 150, "reason": "deadline"},
                    )
                )
            if name == "proposed":
                ok(
                    c.post(
                        f"/rounds/{rid}/overrides",
                        headers=admin,
                        json={"request": "genai-1", "gpus": 40, "reason": "launch"},
                    )
                )
    return app, tokens


_tmp = tempfile.TemporaryDirectory(prefix="fairshare-fuzz-")
_sqlite = make_engine(f"sqlite:///{pathlib.Path(_tmp.name) / 'fuzz.db'}")
upgrade(_sqlite)
APP, TOKENS = seeded_app(_sqlite)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)


@pytest.fixture(scope="module")
def postgres_app() -> Iterator[tuple[FastAPI, dict[str, str]]]:
    for engine in _pg_engine():  # skips without FAIRSHARE_TEST_DATABASE_URL
        upgrade(engine)
        yield seeded_app(engine)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(FUZZ, max_examples=12)
def test_admin_on_sqlite_gets_no_5xx_and_documented_answers(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=bearer(TOKENS["admin"]), checks=CHECKS)


@schema.parametrize()
@settings(FUZZ, max_examples=5)
def test_admin_on_postgresql_gets_no_5xx_and_documented_answers(
    case: schemathesis.Case, postgres_app: tuple[FastAPI, dict[str, str]]
) -> None:
    app, tokens = postgres_app
    case.call_and_validate(app=app, headers=bearer(tokens["admin"]), checks=CHECKS)


@schema.parametrize()
@settings(FUZZ, max_examples=3)
def test_anonymous_gets_no_api_answer_and_no_5xx(case: schemathesis.Case) -> None:
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    response = case.call_and_validate(checks=CHECKS)
    if case.path.startswith("/api/v1/"):
        assert response.status_code >= 400, f"{case.method} {case.path} answered {response.status_code} without a token"


# --- what the fuzzer found, pinned (on both backends) --------------------------------------------

NUL = "a\x00b"
HOSTILE: list[tuple[str, str, str, dict[str, Any]]] = [
    # what                                     method  path ({rid}: an open round)  request
    ("NUL in a path parameter", "GET", "/nodes/a%00b", {}),
    ("NUL in a query filter", "GET", "/audit", {"params": {"actor": NUL}}),
    ("NUL in a team filter", "GET", "/rounds/{rid}/requests", {"params": {"team": NUL}}),
    ("NUL in an appeals filter", "GET", "/appeals", {"params": {"team": NUL}}),
    (
        "NUL in a justification",
        "POST",
        "/rounds/{rid}/requests",
        {"json": {"id": "nul", "team": "llama", "gpus": 4, "justification": NUL}},
    ),
    ("NUL in an e-mail address", "POST", "/members", {"json": {"name": "x", "email": NUL}}),
    ("GPUs beyond 32 bits", "POST", "/rounds/{rid}/requests", {"json": {"id": "big", "team": "llama", "gpus": 2**40}}),
    ("GPUs beyond 64 bits", "POST", "/rounds/{rid}/requests", {"json": {"id": "huge", "team": "llama", "gpus": 2**70}}),
    (
        "a pool beyond 64 bits",
        "POST",
        "/import",
        {"json": {"name": "lab", "pools": [{"name": "p", "gpu": "H100", "gpus": 2**64}], "org": {"name": "lab"}}},
    ),
    (
        "Infinity as a weight",
        "POST",
        "/rounds/{rid}/requests",
        {"content": (b'{"id": "inf", "team": "llama", "gpus": 4, "weight": Infinity}')},
    ),
    ("NaN as an appeal window", "POST", "/rounds", {"content": (b'{"name": "nan", "appeal_window_hours": NaN}')}),
    ("a body that is not UTF-8", "POST", "/members", {"content": b'{"name": "\xff"}'}),
    (
        "a non-UTF-8 body sent as plain text",
        "POST",
        "/rounds",
        {"content": b"\xff\xfe", "headers": {"Content-Type": "text/plain"}},
    ),
    ("a non-UTF-8 body with no content type", "POST", "/rounds/{rid}/appeals", {"content": b"\xff\xfe", "headers": {}}),
    ("a round name of 250 characters", "POST", "/rounds", {"json": {"name": "r" * 250}}),
    ("a usage period before year 1", "GET", "/usage/llama", {"params": {"until": "0001-01-05T00:00:00"}}),
    (
        "a NUL echoed under an Idempotency-Key",
        "POST",
        "/members/llama-lead/grants",
        {"json": {"role": "lead", "node": NUL}, "headers": {"Idempotency-Key": "hostile-nul"}},
    ),
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hostile_lab(request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, dict[str, str], int]]:
    """A client of the module's app on each backend, and a round of its own that is open."""
    app, tokens = (APP, TOKENS) if request.param == "sqlite" else request.getfixturevalue("postgres_app")
    with TestClient(app, base_url="http://testserver/api/v1") as client:
        rid = client.post("/rounds", headers=bearer(tokens["admin"]), json={"name": "hostile"}).json()["id"]
        assert client.post(f"/rounds/{rid}/open", headers=bearer(tokens["admin"])).status_code == 200
        yield client, tokens, rid


@pytest.mark.parametrize(("what", "method", "path", "request_kw"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_refused_with_a_reason_never_a_5xx(
    hostile_lab: tuple[TestClient, dict[str, str], int], what: str, method: str, path: str, request_kw: dict[str, Any]
) -> None:
    client, tokens, rid = hostile_lab
    headers = bearer(tokens["admin"])
    request_kw = dict(request_kw)
    extra = request_kw.pop("headers", None)  # given: exactly these (so none means no Content-Type)
    if extra is not None:
        headers.update(extra)
    elif "content" in request_kw:
        headers["Content-Type"] = "application/json"
    r = client.request(method, path.format(rid=rid), headers=headers, **request_kw)
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    if r.status_code >= 400:
        assert r.json()["detail"], f"{what}: a refusal says why"
    if what in (
        "GPUs beyond 64 bits",
        "a pool beyond 64 bits",
        "Infinity as a weight",
        "NaN as an appeal window",
        "a non-UTF-8 body sent as plain text",
        "a round name of 250 characters",
        "a usage period before year 1",
    ):
        assert r.status_code == 422, f"{what}: {r.status_code} {r.text[:300]}"
    if what == "a usage period before year 1":
        assert "until" in r.json()["detail"], r.text
    if "Idempotency-Key" in headers:  # the refusal is stored and replayed, never left "still running"
        again = client.request(method, path.format(rid=rid), headers=headers, **request_kw)
        assert again.status_code == r.status_code and again.headers.get("idempotent-replayed") == "true", again.text
