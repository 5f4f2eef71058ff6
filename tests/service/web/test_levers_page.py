"""The levers page, linked from the team page: the same search as the API, readable over plain HTTP."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.service.conftest import Clock, Lab, seed
from tests.service.test_levers_api import make_round
from tests.service.web.test_forms_http import readable, sign_in

from fairshare.service.api.app import create_app
from fairshare.store.db import make_engine, upgrade


@pytest.fixture
def site(tmp_path: Any) -> Iterator[Lab]:
    engine = make_engine(f"sqlite:///{tmp_path / 'lab.db'}")
    upgrade(engine)
    tokens = seed(engine)
    with TestClient(create_app(engine=engine, clock=Clock(), secure_cookies=False)) as client:
        yield Lab(client, client.app.state.clock, tokens, engine)  # type: ignore[attr-defined]
    engine.dispose()


def test_the_team_page_links_each_request_to_its_levers(site: Lab) -> None:
    rid = make_round(site, "close", "propose", "publish")
    sign_in(site.client, site.tokens["llama-lead"], f"/rounds/{rid}/teams/llama")
    team = site.client.get(f"/rounds/{rid}/teams/llama").text
    assert f'href="/rounds/{rid}/requests/l1/levers"' in team
    page = site.client.get(f"/rounds/{rid}/requests/l1/levers")
    assert page.status_code == 200
    text = html.unescape(readable(page))
    api = site.call("llama-lead", "GET", f"/rounds/{rid}/requests/l1/levers", 200).json()
    for lv in api["levers"]:
        assert lv["description"] in text
    assert "weight of team llama" in text and "minimum 70 ->" in text
    assert "No effect" in text and "who pays" in text.lower() and "opt" in text


def test_a_proposal_s_levers_are_the_committees(site: Lab) -> None:
    rid = make_round(site, "close", "propose")
    sign_in(site.client, site.tokens["llama-lead"], "/")
    refused = site.client.get(f"/rounds/{rid}/requests/l1/levers")
    assert refused.status_code == 403 and "committee" in readable(refused)
    sign_in(site.client, site.tokens["chair"], "/")
    assert site.client.get(f"/rounds/{rid}/requests/nope/levers").status_code == 404
    assert site.client.get(f"/rounds/{rid}/requests/l1/levers").status_code == 200
