"""Service fixtures: a migrated database per test, on SQLite and (when configured) PostgreSQL.

PostgreSQL runs when FAIRSHARE_TEST_DATABASE_URL is set (`.ci/run` sets it); each test gets
its own schema, dropped afterwards.  Without it those cases skip and say how to enable them.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from fairshare import workflow as wf
from fairshare.scenario.files import loads_scenario
from fairshare.service.api.app import create_app
from fairshare.store.db import database_url, make_engine, session_factory, upgrade
from fairshare.store.repo import create_token, ensure_member, grant, import_scenario

PG_URL = os.environ.get("FAIRSHARE_TEST_DATABASE_URL")
SKIP_PG = "PostgreSQL tests need FAIRSHARE_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"

SMALL_LAB = """
name: small-lab
reference_gpu: A100
pools:
  - {name: h100-east, gpu: H100, site: east, gpus: 64}
  - {name: a100-west, gpu: A100, site: west, gpus: 128}
org:
  name: lab
  children:
    - name: research
      weight: 2
      children: [{name: llama}, {name: opt}]
    - name: product
      children: [{name: genai}]
policy:
  date: 2026-11-01
"""


@dataclass
class Clock:
    """A clock the tests move by hand (appeal deadlines, appeal windows)."""

    now: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC))

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += dt.timedelta(**kwargs)


def _pg_engine() -> Iterator[Engine]:
    if not PG_URL:
        pytest.skip(SKIP_PG)
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(database_url(PG_URL))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"}, pool_size=60, max_overflow=10)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Engine]:
    """A freshly migrated database of each kind."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'fairshare.db'}")
        upgrade(eng)
        yield eng
        eng.dispose()
    else:
        for eng in _pg_engine():
            upgrade(eng)
            yield eng


# role name -> (member, role, node) seeded in every lab
PEOPLE: dict[str, tuple[wf.Role, str]] = {
    "admin": (wf.Role.admin, "lab"),
    "chair": (wf.Role.committee, "lab"),
    "research-committee": (wf.Role.committee, "research"),
    "llama-lead": (wf.Role.lead, "llama"),
    "llama-member": (wf.Role.member, "llama"),
    "opt-lead": (wf.Role.lead, "opt"),
    "genai-lead": (wf.Role.lead, "genai"),
}


@dataclass
class Lab:
    """A running service on a seeded database, with a token per person."""

    client: TestClient
    clock: Clock
    tokens: dict[str, str]
    engine: Engine

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def call(self, who: str, method: str, path: str, expect: int | None = None, **kw: Any) -> Any:
        r = self.client.request(method, "/api/v1" + path, headers={**self.as_(who), **kw.pop("headers", {})}, **kw)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path} as {who}: {r.status_code} {r.text}"
        return r


def seed(engine: Engine, scenario_yaml: str = SMALL_LAB) -> dict[str, str]:
    sessions = session_factory(engine)
    tokens = {}
    with sessions() as s:
        import_scenario(s, loads_scenario(scenario_yaml, "lab.yaml"))
        for name, (role, node) in PEOPLE.items():
            member = ensure_member(s, name)
            grant(s, member, role, node)
            tokens[name] = create_token(s, member)
        s.commit()
    return tokens


@pytest.fixture
def lab(engine: Engine) -> Iterator[Lab]:
    clock = Clock()
    tokens = seed(engine)
    app = create_app(engine=engine, clock=clock)
    with TestClient(app) as client:
        yield Lab(client, clock, tokens, engine)
