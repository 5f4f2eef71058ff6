"""The pages over plain HTTP (no browser): odd form values, refusals and errors are readable pages,
never a 500 or a JSON blob; signing in returns to the page asked for, query included."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from tests.service.conftest import Clock, seed

from fairshare.service.api.app import create_app
from fairshare.store.db import make_engine, upgrade

NINES = "9" * 5000  # past Python's 4,300-digit limit for int()


@pytest.fixture
def site(tmp_path: Any) -> Iterator[tuple[TestClient, dict[str, str], int]]:
    """A published round on SQLite (l1 and l2 of llama, o1 of opt), its client and the tokens."""
    engine = make_engine(f"sqlite:///{tmp_path / 'lab.db'}")
    upgrade(engine)
    tokens = seed(engine)
    app = create_app(engine=engine, clock=Clock(), secure_cookies=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        api = lambda who, method, path, **kw: client.request(  # noqa: E731
            method, "/api/v1" + path, headers={"Authorization": f"Bearer {tokens[who]}"}, **kw
        )
        rid = api("chair", "POST", "/rounds", json={"name": "r1"}).json()["id"]
        api("chair", "POST", f"/rounds/{rid}/open")
        for who, key, team, gpus in (
            ("llama-lead", "l1", "llama", 100),
            ("llama-lead", "l2", "llama", 50),
            ("opt-lead", "o1", "opt", 300),
        ):
            assert (
                api(
                    who,
                    "POST",
                    f"/rounds/{rid}/requests",
                    json={"id": key, "team": team, "gpus": gpus, "sites": ["west"]},
                ).status_code
                == 201
            )
        for step in ("close", "propose", "publish"):
            assert api("chair", "POST", f"/rounds/{rid}/{step}").status_code == 200
        yield client, tokens, rid
    engine.dispose()


def sign_in(client: TestClient, token: str, page: str) -> str:
    """Sign in and return the CSRF token of `page`'s forms."""
    client.cookies.clear()
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)[1]  # type: ignore[index]
    assert client.post("/login", data={"token": token, "csrf": login_csrf}, follow_redirects=False).status_code == 303
    return re.search(r'name="csrf" value="([^"]+)"', client.get(page).text)[1]  # type: ignore[index]


def readable(r: Any) -> str:
    """The page's text, after checking it is a page (HTML, not JSON, not a 500)."""
    assert r.status_code < 500, r.text[:300]
    assert r.headers["content-type"].startswith("text/html"), r.text[:300]
    return r.text.replace("&#39;", "'").replace("&#34;", '"')


@pytest.mark.parametrize("asked", ["²", NINES, "0", "-3", "12.5"])
def test_an_appeal_with_an_odd_number_is_a_field_error(
    site: tuple[TestClient, dict[str, str], int], asked: str
) -> None:
    client, tokens, rid = site
    csrf = sign_in(client, tokens["llama-lead"], f"/rounds/{rid}/teams/llama")
    r = client.post(
        f"/rounds/{rid}/teams/llama/appeals", data={"request": "l1", "asked": asked, "reason": "x", "csrf": csrf}
    )
    assert r.status_code == 422
    assert "enter the number of GPUs the team asks for" in readable(r)


def test_an_appeal_for_no_more_than_the_request_has_keeps_the_form(
    site: tuple[TestClient, dict[str, str], int],
) -> None:
    client, tokens, rid = site
    csrf = sign_in(client, tokens["llama-lead"], f"/rounds/{rid}/teams/llama")
    r = client.post(
        f"/rounds/{rid}/teams/llama/appeals", data={"request": "l1", "asked": "1", "reason": "keep me", "csrf": csrf}
    )
    text = readable(r)
    assert r.status_code == 422 and "an appeal asks for more than the" in text and "keep me" in text


@pytest.mark.parametrize(
    "query, field_error",
    [
        ({"c_a100-west": "²"}, "capacity is a whole number of GPUs"),
        ({"c_a100-west": NINES}, "capacity is a whole number of GPUs"),
        ({"w_llama": "nan"}, "a weight is a number above 0"),
        ({"w_llama": "inf"}, "a weight is a number above 0"),
        ({"w_llama": "1e400"}, "a weight is a number above 0"),
        ({"w_llama": "1e9"}, "a weight is a number above 0"),
    ],
)
def test_a_what_if_with_an_odd_value_is_a_field_error_not_a_solver_failure(
    site: tuple[TestClient, dict[str, str], int], query: dict[str, str], field_error: str
) -> None:
    client, tokens, rid = site
    sign_in(client, tokens["chair"], f"/rounds/{rid}")
    text = readable(client.get(f"/rounds/{rid}/whatif", params=query))
    assert field_error in text and "Unavailable" not in text


def test_a_request_for_a_team_that_does_not_exist_is_a_not_found_page(
    site: tuple[TestClient, dict[str, str], int],
) -> None:
    client, tokens, rid = site
    csrf = sign_in(client, tokens["llama-member"], f"/rounds/{rid}/teams/llama")
    r = client.post(f"/rounds/{rid}/teams/nope/requests", data={"id": "z", "gpus": "1", "csrf": csrf})
    assert r.status_code == 404 and "no org node named 'nope'" in readable(r)


def test_a_ruling_that_cannot_be_pinned_says_why(site: tuple[TestClient, dict[str, str], int]) -> None:
    """l2 can use only the west pool; a grant beyond it is refused with the override's own reason."""
    client, tokens, rid = site
    csrf = sign_in(client, tokens["llama-lead"], f"/rounds/{rid}/teams/llama")
    client.post(
        f"/rounds/{rid}/teams/llama/appeals", data={"request": "l2", "asked": "300", "reason": "x", "csrf": csrf}
    )
    csrf = sign_in(client, tokens["research-committee"], "/appeals")
    ruling = {"ruling": "grant", "reason": "ok", "csrf": csrf}
    preview = readable(client.post("/appeals/1/rule", data=ruling))  # the preview says it would be refused
    assert "It would be refused: request 'l2' can use at most" in preview
    assert re.search(r'<input type="radio" name="ruling" value="grant"[^>]*disabled>', preview)  # not offered
    r = client.post("/appeals/1/rule", data={**ruling, "confirm": "yes"}, follow_redirects=False)
    error = parse_qs(urlsplit(r.headers["location"]).query)["error"][0]
    assert error.startswith("appeal 1: request 'l2' can use at most") and "300 cannot be pinned" in error


def test_a_ruling_is_previewed_and_saved_only_once_confirmed(site: tuple[TestClient, dict[str, str], int]) -> None:
    client, tokens, rid = site
    csrf = sign_in(client, tokens["llama-lead"], f"/rounds/{rid}/teams/llama")
    client.post(
        f"/rounds/{rid}/teams/llama/appeals", data={"request": "l2", "asked": "100", "reason": "x", "csrf": csrf}
    )
    csrf = sign_in(client, tokens["research-committee"], "/appeals")
    ruling = {"ruling": "grant", "reason": "ok", "csrf": csrf}
    preview = readable(client.post("/appeals/1/rule", data=ruling))
    assert "Preview: the choices for appeal 1" in preview and "Confirm the ruling" in preview and "l2" in preview
    assert re.search(r'value="grant" required checked>', preview)  # the choice made in the queue, kept
    assert 'class="state">open<' in preview  # nothing ruled yet
    r = client.post("/appeals/1/rule", data={**ruling, "confirm": "yes"}, follow_redirects=False)
    assert parse_qs(urlsplit(r.headers["location"]).query)["msg"][0] == "appeal 1: granted"


def test_a_refused_request_says_why_when_the_form_is_not_shown(site: tuple[TestClient, dict[str, str], int]) -> None:
    """The round is published, so the team page draws no request form; the refusal still shows."""
    client, tokens, rid = site
    csrf = sign_in(client, tokens["llama-member"], f"/rounds/{rid}/teams/llama")
    r = client.post(f"/rounds/{rid}/teams/llama/requests", data={"id": "late", "gpus": "4", "csrf": csrf})
    assert r.status_code == 422
    refusal = re.search(r'data-testid="form-refused">([^<]+)<', readable(r))
    assert refusal and "published" in refusal[1]


def test_web_errors_are_pages_and_api_errors_are_json(site: tuple[TestClient, dict[str, str], int]) -> None:
    client, tokens, rid = site
    sign_in(client, tokens["chair"], f"/rounds/{rid}")
    assert "round_id" in readable(client.get("/rounds/abc"))
    assert client.get("/no-such-page").status_code == 404 and "Not found" in readable(client.get("/no-such-page"))
    assert client.get(f"/rounds/{rid}/step").status_code == 405
    api = client.get("/api/v1/no-such-thing", headers={"Authorization": f"Bearer {tokens['chair']}"})
    assert api.status_code == 404 and api.headers["content-type"] == "application/json"


def test_signing_in_returns_to_the_page_asked_for_with_its_query(site: tuple[TestClient, dict[str, str], int]) -> None:
    client, tokens, rid = site
    client.cookies.clear()
    asked = f"/rounds/{rid}/whatif?w_llama=2&drop=l1"
    to_login = client.get(asked, follow_redirects=False)
    assert to_login.status_code == 303
    next_ = parse_qs(urlsplit(to_login.headers["location"]).query)["next"][0]
    assert next_ == asked
    login = client.get(to_login.headers["location"])
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)[1]  # type: ignore[index]
    back = client.post(
        "/login", data={"token": tokens["chair"], "csrf": login_csrf, "next": next_}, follow_redirects=False
    )
    assert back.headers["location"] == asked


def test_pages_forbid_framing_and_sniffing(site: tuple[TestClient, dict[str, str], int]) -> None:
    client, _, _ = site
    headers = client.get("/login").headers
    assert headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_a_signed_session_of_another_shape_means_sign_in_again(site: tuple[TestClient, dict[str, str], int]) -> None:
    client, _, _ = site
    signer = client.app.state.web_sessions.signer  # type: ignore[attr-defined]
    for payload in (["not", "a", "dict"], {"x": 1}, {"t": None}):
        client.cookies.clear()
        client.cookies.set("fairshare_session", signer.dumps(payload))
        r = client.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), r.text[:200]


def test_a_speed_for_a_gpu_type_no_pool_has_is_refused_on_the_form(
    site: tuple[TestClient, dict[str, str], int],
) -> None:
    """The API refused it; the page stored it, leaving a request that could run nowhere."""
    client, tokens, _ = site
    api = {"Authorization": f"Bearer {tokens['chair']}"}
    rid = client.post("/api/v1/rounds", headers=api, json={"name": "r2"}).json()["id"]
    client.post(f"/api/v1/rounds/{rid}/open", headers=api)
    csrf = sign_in(client, tokens["llama-member"], f"/rounds/{rid}/teams/llama")
    r = client.post(
        f"/rounds/{rid}/teams/llama/requests", data={"id": "tpu", "gpus": "4", "speed_TPU": "2", "csrf": csrf}
    )
    assert r.status_code == 422 and "unknown GPU type 'TPU'" in readable(r)
    assert client.get(f"/api/v1/rounds/{rid}/requests", headers=api).json()["total"] == 0
