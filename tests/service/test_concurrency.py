"""50 clients editing one request at once, through a real uvicorn server on PostgreSQL.

Every write either lands or gets 409; none is lost silently: the stored request, its version
history and the audit log hold exactly the writes that were answered 200.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from tests.service.conftest import PG_URL, SKIP_PG, Clock, _pg_engine, seed

from fairshare.service.api.app import create_app
from fairshare.store.db import upgrade

pytestmark = pytest.mark.skipif(not PG_URL, reason=SKIP_PG)

CLIENTS = 50


@dataclass
class Live:
    """A uvicorn server on a loopback port, serving the app on its own PostgreSQL schema."""

    url: str
    tokens: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def call(self, who: str, method: str, path: str, expect: int, **kw: Any) -> Any:
        r = httpx.request(method, self.url + "/api/v1" + path, headers=self.headers(who), timeout=30, **kw)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()


@pytest.fixture
def live() -> Iterator[Live]:
    for engine in _pg_engine():
        upgrade(engine)
        tokens = seed(engine)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(engine=engine, clock=Clock()), log_level="warning", access_log=False, backlog=256
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        try:
            yield Live(f"http://127.0.0.1:{port}", tokens)
        finally:
            server.should_exit = True
            thread.join(timeout=20)
            sock.close()
            assert not thread.is_alive(), "uvicorn did not stop"


def body(gpus: int, version: int) -> dict[str, Any]:
    return {
        "id": "llama-4",
        "team": "llama",
        "gpus": gpus,
        "speed": {"H100": 2.0, "A100": 1.0},
        "justification": f"client asking for {gpus}",
        "version": version,
    }


def open_request(live: Live) -> dict[str, Any]:
    """An open round with one request of llama's, at version 1 (gpus 100)."""
    rid = live.call("chair", "POST", "/rounds", 201, json={"name": "2026-11"})["id"]
    live.call("chair", "POST", f"/rounds/{rid}/open", 200)
    req = live.call(
        "llama-lead",
        "POST",
        f"/rounds/{rid}/requests",
        201,
        json={k: v for k, v in body(100, 1).items() if k != "version"},
    )
    assert req["version"] == 1
    return req


def update_audits(live: Live, request_id: int) -> list[dict[str, Any]]:
    items = live.call("chair", "GET", "/audit?limit=1000", 200)["items"]
    return [e for e in items if e["action"] == "request.update" and e["entity_id"] == str(request_id)]


def gpus_values(i: int) -> int:
    return 1000 + i  # distinct per client, so every stored value names its writer


def test_fifty_simultaneous_writes_of_one_version_land_once_and_the_rest_get_409(live: Live) -> None:
    req = open_request(live)
    barrier = threading.Barrier(CLIENTS)

    def client(i: int) -> httpx.Response:
        with httpx.Client(base_url=live.url, headers=live.headers("llama-lead"), timeout=60) as c:
            barrier.wait(timeout=30)
            return c.put(f"/api/v1/requests/{req['id']}", json=body(gpus_values(i), req["version"]))

    with ThreadPoolExecutor(CLIENTS) as pool:
        responses = list(pool.map(client, range(CLIENTS)))

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 409}, [(r.status_code, r.text) for r in responses if r.status_code not in (200, 409)]
    winners = [i for i, r in enumerate(responses) if r.status_code == 200]
    assert len(winners) == 1, statuses
    won = responses[winners[0]].json()
    assert won["gpus"] == gpus_values(winners[0]) and won["version"] == req["version"] + 1
    assert all("re-read it and retry" in r.json()["detail"] for r in responses if r.status_code == 409)

    stored = live.call("llama-lead", "GET", f"/requests/{req['id']}", 200)
    assert (stored["gpus"], stored["version"]) == (won["gpus"], won["version"])
    versions = live.call("llama-lead", "GET", f"/requests/{req['id']}/versions", 200)
    assert [(v["version"], v["data"]["gpus"]) for v in versions] == [(1, 100), (2, won["gpus"])]
    audits = update_audits(live, req["id"])
    assert [(a["before"]["gpus"], a["after"]["gpus"]) for a in audits] == [(100, won["gpus"])]


def test_fifty_clients_retrying_on_409_all_land_as_fifty_versions(live: Live) -> None:
    req = open_request(live)
    barrier = threading.Barrier(CLIENTS)
    deadline = time.monotonic() + 120

    def client(i: int) -> tuple[int, int, list[int]]:
        """Re-read and re-PUT until the write lands; returns (version landed, attempts, statuses)."""
        rng = random.Random(i)
        statuses = []
        with httpx.Client(base_url=live.url, headers=live.headers("llama-lead"), timeout=60) as c:
            barrier.wait(timeout=30)
            while time.monotonic() < deadline:
                read = c.get(f"/api/v1/requests/{req['id']}")
                assert read.status_code == 200, read.text
                r = c.put(f"/api/v1/requests/{req['id']}", json=body(gpus_values(i), read.json()["version"]))
                statuses.append(r.status_code)
                if r.status_code == 200:
                    assert r.json()["gpus"] == gpus_values(i)
                    return r.json()["version"], len(statuses), statuses
                assert r.status_code == 409, r.text
                time.sleep(rng.uniform(0, min(0.2, 0.01 * 2 ** len(statuses))))  # backoff with jitter
        raise AssertionError(f"client {i} did not land within the time limit: {statuses}")

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(client, range(CLIENTS)))

    landed = {version: i for i, (version, _, _) in enumerate(results)}
    assert sorted(landed) == list(range(2, CLIENTS + 2)), "two clients landed on one version"
    assert sum(attempts for _, attempts, _ in results) > CLIENTS, "no write ever conflicted: not concurrent"

    versions = live.call("llama-lead", "GET", f"/requests/{req['id']}/versions", 200)
    assert [v["version"] for v in versions] == list(range(1, CLIENTS + 2))
    for v in versions[1:]:  # each version holds exactly the write that was told it landed there
        assert v["data"]["gpus"] == gpus_values(landed[v["version"]])
    stored = live.call("llama-lead", "GET", f"/requests/{req['id']}", 200)
    assert stored["version"] == CLIENTS + 1 and stored["gpus"] == versions[-1]["data"]["gpus"]
    audits = sorted(update_audits(live, req["id"]), key=lambda a: a["id"])
    assert len(audits) == CLIENTS
    chain = [100] + [gpus_values(landed[v]) for v in range(2, CLIENTS + 2)]
    assert [(a["before"]["gpus"], a["after"]["gpus"]) for a in audits] == list(zip(chain, chain[1:], strict=False))
