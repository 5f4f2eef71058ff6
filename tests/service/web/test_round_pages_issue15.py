"""The round and team pages (issue 15): a round's date and capacity from its own world, "no demand" for a
team that asked for nothing, the copy-forward buttons, and usage while the round was in force."""

from __future__ import annotations

import datetime as dt
import re

from tests.service.conftest import Lab

from fairshare.store import models as m
from fairshare.store.db import session_factory

SITE = "https://testserver"  # the session cookie is Secure


def _sign_in(lab: Lab, who: str, page: str) -> tuple[str, str]:
    """Sign in as `who`; the page's HTML and its forms' CSRF token."""
    lab.client.cookies.clear()
    login = lab.client.get(SITE + "/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)[1]  # type: ignore[index]
    lab.client.post(SITE + "/login", data={"token": lab.tokens[who], "csrf": csrf, "next": "/"})
    html = lab.client.get(SITE + page).text
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    return html, found[1] if found else ""


def _round(lab: Lab, name: str, **extra: str) -> int:
    rid: int = lab.call("chair", "POST", "/rounds", 201, json={"name": name, **extra}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    return rid


def _ask(lab: Lab, rid: int, who: str, key: str, team: str, speed: dict[str, float] | None = None) -> None:
    body = {"id": key, "team": team, "gpus": 10, "speed": speed or {"A100": 1.0}}
    lab.call(who, "POST", f"/rounds/{rid}/requests", 201, json=body)


def _publish(lab: Lab, rid: int) -> None:
    for step in ("close", "propose", "publish"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)


def test_the_round_page_shows_its_date_and_capacity_by_gpu_type(lab: Lab) -> None:
    rid = _round(lab, "2026-12", date="2026-12-01")
    html, _ = _sign_in(lab, "llama-member", f"/rounds/{rid}")
    world = re.search(r'data-testid="round-world">(.*?)</p>', html, re.S)[1]  # type: ignore[index]
    assert "2026-12-01" in world and "H100 64" in world and "A100 128" in world and "192 GPUs" in world


def test_a_team_that_asked_for_nothing_shows_no_demand_not_zero_percent(lab: Lab) -> None:
    rid = _round(lab, "r1")
    _ask(lab, rid, "llama-lead", "l1", "llama")
    _publish(lab, rid)
    genai = lab.call("genai-lead", "GET", f"/rounds/{rid}/entitlements/genai", 200).json()
    assert genai["demand"] == 0 and genai["share_of_fair"] is None
    listed = lab.call("chair", "GET", f"/rounds/{rid}/entitlements", 200).json()["items"]
    assert next(e for e in listed if e["node"] == "genai")["share_of_fair"] is None
    assert next(e for e in listed if e["node"] == "llama")["share_of_fair"] is not None
    html, _ = _sign_in(lab, "genai-lead", f"/rounds/{rid}/teams/genai")
    assert 'data-testid="no-demand"' in html and "% of it" not in html


def test_copy_forward_from_the_team_page_and_the_round_page(lab: Lab) -> None:
    march = _round(lab, "2026-03")
    _ask(lab, march, "llama-lead", "l1", "llama")
    _ask(lab, march, "opt-lead", "o1", "opt")
    lab.call("chair", "POST", f"/rounds/{march}/close", 200)
    april = _round(lab, "2026-04")

    html, csrf = _sign_in(lab, "genai-lead", f"/rounds/{april}/teams/llama")
    assert 'data-testid="copy-forward"' not in html  # not genai's team: no button
    refused = lab.client.post(SITE + f"/rounds/{april}/copy-forward", data={"team": "llama", "csrf": csrf})
    assert "not a member or lead of team &#39;llama&#39;" in refused.text
    assert lab.call("chair", "GET", f"/rounds/{april}/requests", 200).json()["total"] == 0

    html, csrf = _sign_in(lab, "llama-lead", f"/rounds/{april}/teams/llama")
    assert 'data-testid="copy-forward"' in html
    done = lab.client.post(SITE + f"/rounds/{april}/copy-forward", data={"team": "llama", "csrf": csrf})
    assert "copied 1 request(s) from round 2026-03" in done.text and 'data-request="l1"' in done.text

    html, csrf = _sign_in(lab, "chair", f"/rounds/{april}")
    assert 'data-testid="copy-forward"' in html
    done = lab.client.post(SITE + f"/rounds/{april}/copy-forward", data={"csrf": csrf})
    assert "copied 1 request(s)" in done.text and "skipped l1 (llama)" in done.text
    keys = {r["key"] for r in lab.call("chair", "GET", f"/rounds/{april}/requests", 200).json()["items"]}
    assert keys == {"l1", "o1"}


def test_the_team_page_shows_usage_while_the_round_was_in_force_and_flags_unentitled_types(lab: Lab) -> None:
    rid = _round(lab, "r1")
    _ask(lab, rid, "opt-lead", "o1", "opt")  # 10 A100
    _publish(lab, rid)
    start = lab.clock.now
    lab.clock.advance(days=1)
    with session_factory(lab.engine)() as s:
        for gpu, hours in (("A100", 120.0), ("H100", 30.0)):
            s.add(
                m.Usage(
                    source="slurm:dev",
                    node="opt",
                    gpu=gpu,
                    period_start=start,
                    period_end=start + dt.timedelta(days=1),
                    gpu_hours=hours,
                )
            )
        s.commit()
    html, _ = _sign_in(lab, "opt-lead", f"/rounds/{rid}/teams/opt")
    table = re.search(r'data-testid="round-usage">(.*?)</table>', html, re.S)[1]  # type: ignore[index]
    a100 = re.search(r'data-gpu="A100">(.*?)</tr>', table, re.S)[1]  # type: ignore[index]
    h100 = re.search(r'data-gpu="H100">(.*?)</tr>', table, re.S)[1]  # type: ignore[index]
    assert ">10<" in a100 and "240" in a100 and "120.0" in a100 and "50%" in a100  # 10 GPUs x 24 h
    assert "30.0" in h100 and "used without entitlement" in h100
