"""fairshare's hysteresis (issue 19): a running gang is moved only when its team holds more than its
share x (1 + margin), and never within the minimum run time of its start (those knobs are tested with the
waiting team's margin off); the waiting team's margin (the default) moves gangs only for a team far below its share."""

from __future__ import annotations

import pytest
from sim_helpers import finishes, job, run

from fairshare.simulate.policies import make

# a holds all 4 GPUs with four 1-GPU jobs; b arrives at 100 and its share is 2
JOBS = [job(f"A{i}", "a", 0, 1, 400) for i in range(1, 5)] + [job("B1", "b", 100, 2, 100)]


def test_without_hysteresis_the_arrival_preempts_two_gangs() -> None:
    res = run("fairshare", JOBS, "g=4", wait_margin=None)
    assert sum(j.preemptions for j in res.jobs) == 2
    assert finishes(res)["B1"] == 200


def test_a_margin_keeps_a_team_over_its_share_until_it_exceeds_the_margin() -> None:
    # share 2, margin 1.0: a may keep up to 4 GPUs: nobody moves and B1 waits for a's jobs
    res = run("fairshare", JOBS, "g=4", wait_margin=None, margin=1.0)
    assert sum(j.preemptions for j in res.jobs) == 0
    assert finishes(res)["B1"] == 500
    # margin 0.5: a keeps 2 x 1.5 = 3 gangs; A4 gives way to b's first 1-GPU job
    small = [*JOBS[:4], job("B1", "b", 100, 1, 100), job("B2", "b", 100, 1, 100)]
    res = run("fairshare", small, "g=4", wait_margin=None, margin=0.5)
    assert [j.id for j in res.jobs if j.preemptions] == ["A4"]
    assert finishes(res)["B1"] == 200
    # ... but a 2-GPU B1 does not fit in the one GPU A4 would leave: A4 keeps it (work conserving)
    res = run("fairshare", JOBS, "g=4", wait_margin=None, margin=0.5)
    assert sum(j.preemptions for j in res.jobs) == 0


def test_a_minimum_run_time_protects_young_gangs_only() -> None:
    # a's jobs started at 0; with a 300 s minimum they are protected at 100 and 200, not at 300
    res = run("fairshare", JOBS, "g=4", wait_margin=None, min_run_hours=300 / 3600)
    assert sum(j.preemptions for j in res.jobs) == 2
    assert finishes(res)["B1"] == 400
    # a minimum longer than a's jobs: they all finish first
    res = run("fairshare", JOBS, "g=4", wait_margin=None, min_run_hours=1.0)
    assert sum(j.preemptions for j in res.jobs) == 0
    assert finishes(res)["B1"] == 500


@pytest.mark.parametrize("params", [{"margin": -0.1}, {"margin": float("nan")}, {"min_run_hours": -1.0}])
def test_bad_knobs_are_refused_with_their_name(params: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(params))):
        make("fairshare", **params)


def test_a_margin_still_lets_a_gang_move_up_to_a_faster_type() -> None:
    # A2 starts on the K80 (the V100 is A1's); when A1 finishes it moves up, margin or not
    jobs = [job("A1", "a", 0, 1, 150, v100=2.0, k80=1.0), job("A2", "a", 0, 1, 2000, v100=2.0, k80=1.0)]
    for params in ({}, {"margin": 0.0}):
        res = run("fairshare", jobs, "v100=1,k80=1", wait_margin=None, **params)
        a2 = next(j for j in res.jobs if j.id == "A2")
        # 100 s on the K80 (100 steps), then 950 s on the V100 (1,900 steps): not 2,000 s on the K80
        assert (a2.migrations, a2.finish) == (1, 1050.0), params


# the waiting team's margin: b runs B1 on one GPU from 0; at 100 B2 and B3 arrive and b's share
# becomes 3 of 6 while a holds 5
WAIT = [job(f"A{i}", "a", 0, 1, 400) for i in range(1, 6)] + [
    job("B1", "b", 0, 1, 400),
    job("B2", "b", 100, 1, 100),
    job("B3", "b", 100, 1, 100),
]


def test_a_waiting_team_within_its_margin_moves_nobody() -> None:
    # b holds 1 of its 3: below its share, but not by more than 70%: a keeps its five gangs
    res = run("fairshare", WAIT, "g=6", wait_margin=0.7)
    assert sum(j.preemptions for j in res.jobs) == 0
    assert finishes(res)["B2"] == 500


def test_a_waiting_team_beyond_its_margin_takes_only_what_its_share_lacks() -> None:
    # margin 0.5: 1 < 1.5, so b's two jobs start at 100 on GPUs of a's two youngest-in-line gangs
    res = run("fairshare", WAIT, "g=6", wait_margin=0.5)
    assert [j.id for j in res.jobs if j.preemptions] == ["A4", "A5"]
    assert (finishes(res)["B2"], finishes(res)["B3"]) == (200, 200)


def test_a_waiting_team_never_takes_a_team_below_its_share() -> None:
    # c holds exactly its share (2 of 6): only a, over its share, gives way to b
    jobs = [job(f"A{i}", "a", 0, 1, 400) for i in range(1, 5)]
    jobs += [job(f"C{i}", "c", 0, 1, 400) for i in range(1, 3)] + [job("B1", "b", 100, 2, 100)]
    res = run("fairshare", jobs, "g=6", wait_margin=0.0)
    assert [j.id for j in res.jobs if j.preemptions] == ["A3", "A4"]
    assert finishes(res)["B1"] == 200


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_a_bad_wait_margin_is_refused_with_its_name(bad: float) -> None:
    with pytest.raises(ValueError, match="wait_margin"):
        make("fairshare", wait_margin=bad)


def test_a_starved_teams_gang_larger_than_its_share_drains_a_type_until_it_starts() -> None:
    # a runs four 1-GPU jobs ending at 100, 200, 300, 300 and has eight more queued; b's 4-GPU B1
    # arrives at 50 with a share of 2
    jobs = [job("a01", "a", 0, 1, 100), job("a02", "a", 0, 1, 200), job("a03", "a", 0, 1, 300)]
    jobs += [job("a04", "a", 0, 1, 300)] + [job(f"a{i:02d}", "a", 0, 1, 100) for i in range(5, 13)]
    jobs += [job("B1", "b", 50, 4, 100)]
    # without hysteresis every GPU a frees goes to a's queue: B1 waits for a's last jobs
    start = {j.id: j.start for j in run("fairshare", jobs, "g=4", wait_margin=None).jobs}
    assert (start["a05"], start["B1"]) == (100, 500)
    # the waiting team's margin: b, holding nothing, may start one gang of any size; taking a's
    # gangs cannot free 4 GPUs without starving a, so the GPUs a frees from 100 on wait for B1
    res = run("fairshare", jobs, "g=4", wait_margin=0.2)
    start = {j.id: j.start for j in res.jobs}
    assert start["B1"] == 300
    assert min(start[f"a{i:02d}"] for i in range(5, 13)) >= 300
    assert sum(j.preemptions for j in res.jobs) == 0
