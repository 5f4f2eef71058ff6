"""Usage per round (issue 15, finding 6): usage is attributed to the round whose allocation was in force when
it was used (from its publication until the next round's); per GPU type, entitled against used, and a type
used without entitlement is listed and flagged."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.service.conftest import Lab

from fairshare.store import models as m
from fairshare.store.db import session_factory

DAY = dt.timedelta(days=1)


def _published(lab: Lab, name: str, speed: dict[str, float], gpus: int) -> int:
    rid: int = lab.call("chair", "POST", "/rounds", 201, json={"name": name}).json()["id"]
    lab.call("chair", "POST", f"/rounds/{rid}/open", 200)
    body = {"id": f"opt-{name}", "team": "opt", "gpus": gpus, "speed": speed}
    lab.call("opt-lead", "POST", f"/rounds/{rid}/requests", 201, json=body)
    for step in ("close", "propose", "publish"):
        lab.call("chair", "POST", f"/rounds/{rid}/{step}", 200)
    return rid


def _use(lab: Lab, start: dt.datetime, rows: list[tuple[int, str, float]]) -> None:
    with session_factory(lab.engine)() as s:
        for day, gpu, hours in rows:
            s.add(
                m.Usage(
                    source="slurm:dev",
                    node="opt",
                    gpu=gpu,
                    period_start=start + day * DAY,
                    period_end=start + (day + 1) * DAY,
                    gpu_hours=hours,
                )
            )
        s.commit()


def _by_gpu(rows: list[dict[str, Any]]) -> dict[str, tuple[float, float, int, bool]]:
    return {r["gpu"]: (r["gpu_hours"], r["entitled_gpu_hours"], r["entitled_gpus"], r["no_entitlement"]) for r in rows}


def _two_rounds(lab: Lab) -> tuple[int, int]:
    """March gives opt 10 A100 for two days, then April 8 H100 for one day (so far)."""
    march = _published(lab, "2026-03", {"A100": 1.0}, 10)
    start = lab.clock.now
    lab.clock.advance(days=2)
    april = _published(lab, "2026-04", {"H100": 1.0}, 8)
    lab.clock.advance(days=1)
    # days 0 and 1 fall in March, day 2 in April; H100 in March and A100 in April had no entitlement
    _use(lab, start, [(0, "A100", 100.0), (1, "A100", 200.0), (1, "H100", 24.0), (2, "A100", 50.0), (2, "H100", 100.0)])
    return march, april


def test_usage_is_attributed_to_the_round_in_force_and_unentitled_types_are_flagged(lab: Lab) -> None:
    march, april = _two_rounds(lab)
    in_march = lab.call("opt-lead", "GET", "/usage/opt", 200, params={"round_id": march}).json()
    assert _by_gpu(in_march) == {"A100": (300.0, 480.0, 10, False), "H100": (24.0, 0.0, 0, True)}
    assert {r["round"] for r in in_march} == {"2026-03"}
    hours = (dt.datetime.fromisoformat(in_march[0]["until"]) - dt.datetime.fromisoformat(in_march[0]["since"])) / (
        dt.timedelta(hours=1)
    )
    assert hours == 48  # from its publication until April's

    in_april = lab.call("opt-lead", "GET", "/usage/opt", 200, params={"round_id": april}).json()
    assert _by_gpu(in_april) == {"A100": (50.0, 0.0, 0, True), "H100": (100.0, 192.0, 8, False)}
    # a branch: its subtree's usage against its subtree's entitlement
    research = lab.call("chair", "GET", "/usage/research", 200, params={"round_id": april}).json()
    assert _by_gpu(research) == _by_gpu(in_april)


def test_usage_without_round_id_answers_as_before(lab: Lab) -> None:
    _two_rounds(lab)
    rows = lab.call("opt-lead", "GET", "/usage/opt", 200).json()
    assert all(set(r) == {"node", "gpu", "since", "until", "gpu_hours", "entitled_gpu_hours", "round_id"} for r in rows)


def test_usage_per_round_refuses_bad_input_naming_it(lab: Lab) -> None:
    march, _ = _two_rounds(lab)
    draft = lab.call("chair", "POST", "/rounds", 201, json={"name": "2026-05"}).json()["id"]
    assert "round_id" in lab.call("opt-lead", "GET", "/usage/opt", 422, params={"round_id": 0}).text
    assert "round_id" in lab.call("opt-lead", "GET", "/usage/opt", 422, params={"round_id": "x"}).text
    assert "no round with id 999" in lab.call("opt-lead", "GET", "/usage/opt", 404, params={"round_id": 999}).text
    never = lab.call("opt-lead", "GET", "/usage/opt", 422, params={"round_id": draft}).json()["detail"]
    assert f"round_id {draft}" in never and "never in force" in never
    both = lab.call("opt-lead", "GET", "/usage/opt", 422, params={"round_id": march, "since": "2026-01-01T00:00:00Z"})
    assert "round_id" in both.json()["detail"] and "since" in both.json()["detail"]
    lab.call("opt-lead", "GET", "/usage/nobody", 404, params={"round_id": march})
