"""The health page: a heat map of nodes x rounds by share_of_fair, branches above their teams, no-demand
cells grey, each cell's tooltip with received / fair / used and why (over plain HTTP)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.service.conftest import Clock, Lab, seed
from tests.service.test_health_api import publish_round, world
from tests.service.web.test_forms_http import readable, sign_in

from fairshare.service.api.app import create_app
from fairshare.store.db import make_engine, upgrade


@pytest.fixture
def site(tmp_path: Any) -> Iterator[Lab]:
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'lab.db'}")
    upgrade(engine)
    tokens = seed(engine, world(None))
    with TestClient(create_app(engine=engine, clock=Clock(), secure_cookies=False)) as client:
        yield Lab(client, client.app.state.clock, tokens, engine)  # type: ignore[attr-defined]
    engine.dispose()


def cells(page: str, node: str) -> list[str]:
    row = re.search(rf'<tr data-node="{node}".*?</tr>', page, re.S)
    assert row, f"no row for {node}"
    return re.findall(r'data-share="([^"]*)"', row.group(0))


def test_the_heat_map_shows_each_nodes_share_per_round(site: Lab) -> None:
    for i in range(1, 4):
        publish_round(site, f"r{i}", None if i == 1 else 150)
    sign_in(site.client, site.tokens["llama-member"], "/health")
    page = readable(site.client.get("/health"))
    assert [float(v) for v in cells(page, "llama")] == [1.0, 0.5, 0.5]
    assert cells(page, "quiet") == ["", "", ""]  # no demand: grey, no share
    order = re.findall(r'<tr data-node="([^"]+)"', page)
    assert order.index("research") < order.index("llama") < order.index("opt") < order.index("product")
    assert "the guarantee of genai" in page  # the why, in the tooltip
    assert re.search(r'<tr data-node="llama".*?>starved<', page, re.S)
    # the why is also written out under the map (a tooltip does not show on a phone)
    listed = page.split('data-testid="why-short">')[1].split("</main>")[0]
    items = re.findall(r'<li data-node="([^"]+)"', listed)
    assert "llama" in items and "opt" in items and "genai" not in items and "quiet" not in items
    llama = re.search(r'<li data-node="llama">(.*?)</ul></li>', listed, re.S)
    assert llama is not None and "starved 2 round(s)" in " ".join(llama[1].split())
    assert "the guarantee of genai" in llama[1]


def test_no_published_round_is_said_not_failed(site: Lab) -> None:
    sign_in(site.client, site.tokens["chair"], "/health")
    page = readable(site.client.get("/health"))
    assert "no published rounds" in page
