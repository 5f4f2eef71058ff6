"""Usage against entitlement: what a team used per GPU type, beside what its published allocation
entitles it to over the same hours (usage comes from `fairshare usage import slurm`)."""

from __future__ import annotations

import datetime as dt

from tests.service.conftest import Lab

from fairshare.store import models as m
from fairshare.store.db import session_factory

DAY = dt.timedelta(days=1)


def test_usage_beside_entitlement_of_the_newest_published_round(lab: Lab) -> None:
    rid = lab.call("chair", "POST", "/rounds", 201, json={"name": "u"}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    lab.call(
        "opt-lead",
        "POST",
        f"/rounds/{rid}/requests",
        201,
        json={"id": "o1", "team": "opt", "gpus": 10, "speed": {"A100": 1.0}},
    )
    for step in ("close", "propose", "publish"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    start = lab.clock.now - 2 * DAY
    with session_factory(lab.engine)() as s:
        for day, hours in ((0, 120.0), (1, 200.0)):
            s.add(
                m.Usage(
                    source="slurm:dev",
                    node="opt",
                    gpu="A100",
                    period_start=start + day * DAY,
                    period_end=start + (day + 1) * DAY,
                    gpu_hours=hours,
                )
            )
        s.commit()
    rows = lab.call(
        "opt-lead", "GET", "/usage/opt", 200, params={"since": start.isoformat(), "until": lab.clock.now.isoformat()}
    ).json()
    assert rows == [
        {
            "node": "opt",
            "gpu": "A100",
            "since": rows[0]["since"],
            "until": rows[0]["until"],
            "gpu_hours": 320.0,
            "entitled_gpu_hours": 10 * 48.0,
            "round_id": rid,
        }
    ]


def test_usage_of_an_unknown_node_or_an_empty_period_is_refused(lab: Lab) -> None:
    lab.call("opt-lead", "GET", "/usage/nobody", 404)
    r = lab.call("opt-lead", "GET", "/usage/opt?since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z", 422)
    assert "not after" in r.json()["detail"]


def test_the_team_page_shows_usage_against_entitlement(lab: Lab) -> None:
    import re

    test_usage_beside_entitlement_of_the_newest_published_round(lab)
    site = "https://testserver"  # the session cookie is Secure
    page = lab.client.get(site + "/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    lab.client.post(site + "/login", data={"token": lab.tokens["opt-lead"], "csrf": csrf, "next": "/"})
    html = lab.client.get(site + "/rounds/1/teams/opt").text
    # 10 GPUs for 30 days = 7,200 GPU-hours entitled; 320 used = 4%
    assert "Usage in the last 30 days" in html and "320.0" in html and "7,200" in html and "4%" in html
