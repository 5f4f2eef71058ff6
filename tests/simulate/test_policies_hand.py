"""Hand-computed tiny traces, one behaviour each, with exact completion times.

Rounds are 100 s unless said; a job of work W on a type with rate 1 runs W seconds."""

from __future__ import annotations

import pytest
from sim_helpers import finishes, job, run


def test_fifo_blocks_later_jobs_behind_the_head_no_backfill() -> None:
    jobs = [job("A1", "a", 0, 2, 150), job("B1", "b", 0, 2, 100), job("B2", "b", 0, 1, 50)]
    res = run("fifo", jobs, "g=3")
    # A1 takes 2 of 3 GPUs; B1 does not fit and B2 must wait behind it although 1 GPU is idle.
    # A1 ends at 150; the next round starts at 200.
    assert finishes(res) == {"A1": 150, "B1": 300, "B2": 250}


def test_fifo_puts_each_job_on_its_fastest_free_type() -> None:
    jobs = [job("Y", "a", 0, 1, 100, v100=1, k80=1), job("X", "b", 0, 1, 200, v100=2, k80=1)]
    res = run("fifo", jobs, "v100=1,k80=1")
    # Y arrives first (team a sorts first) and, indifferent, takes v100 (cluster order): X gets k80
    assert finishes(res) == {"Y": 100, "X": 200}


def test_quota_does_not_lend_idle_gpus_to_another_team() -> None:
    jobs = [job("A1", "a", 0, 2, 300), job("A2", "a", 0, 2, 100), job("B1", "b", 200, 2, 100)]
    res = run("quota", jobs, "g=4")
    # a owns 2 of 4 GPUs: A2 waits for A1 although b's 2 GPUs are idle until B1 arrives at 200
    assert finishes(res) == {"A1": 300, "A2": 400, "B1": 300}


def test_quota_lets_an_oversized_job_run_when_its_team_is_idle() -> None:
    jobs = [job("A1", "a", 0, 4, 100), job("B1", "b", 0, 1, 100)]
    res = run("quota", jobs, "g=4")
    # A1 (4 GPUs) is larger than a's quota of 2: it runs alone on the idle cluster; B1 waits
    assert finishes(res) == {"A1": 100, "B1": 200}


def test_slurm_fair_tree_starts_the_team_with_less_past_usage_first() -> None:
    jobs = [job("A1", "a", 0, 1, 200), job("A2", "a", 100, 1, 100), job("B1", "b", 100, 1, 100)]
    res = run("slurm", jobs, "g=1")
    # at 200 A2 and B1 are equally old; a has used 200 GPU-s, b none: b ranks first
    assert finishes(res) == {"A1": 200, "B1": 300, "A2": 400}
    assert finishes(run("fifo", jobs, "g=1")) == {"A1": 200, "A2": 300, "B1": 400}


def test_slurm_usage_decays_with_the_half_life() -> None:
    from fairshare.simulate.policies.slurm import SlurmFairTree

    p = SlurmFairTree(half_life_hours=1.0)
    p.usage = {"a": 100.0}
    p.last = 0.0

    class Snap:
        now = 3600.0
        last_round_usage = {"b": 10.0}

    p._decay(Snap())  # type: ignore[arg-type]
    assert p.usage == {"a": 50.0, "b": 10.0}
    # Level FS: a = .5/(50/60) = .6, b = .5/(10/60) = 3: b ranks first
    assert p.fairshare_factors({"a": 1.0, "b": 1.0}) == {"a": 0.5, "b": 1.0}


def test_kueue_borrows_idle_quota_and_reclaims_it_by_preemption() -> None:
    jobs = [job("A1", "a", 0, 2, 1000), job("A2", "a", 0, 2, 1000), job("B1", "b", 100, 2, 100)]
    res = run("kueue", jobs, "g=4", restart=30)
    # A2 borrows b's nominal quota; B1 arrives at 100 and reclaims it (A2 preempted after 100 s
    # of work).  B1 ends at 200; A2 borrows again at 200 and pays 30 s to restart: 200+30+900.
    assert finishes(res) == {"A1": 1000, "A2": 1130, "B1": 200}
    assert {j.id: j.preemptions for j in res.jobs} == {"A1": 0, "A2": 1, "B1": 0}


def test_kueue_does_not_preempt_to_borrow() -> None:
    jobs = [job("A1", "a", 0, 2, 300), job("B1", "b", 0, 2, 300), job("A2", "a", 100, 2, 100)]
    res = run("kueue", jobs, "g=4")
    # A2 would be over a's nominal quota: it waits for free GPUs instead of preempting B1
    assert finishes(res) == {"A1": 300, "B1": 300, "A2": 400}


def test_gavel_time_shares_one_gpu_between_two_equal_jobs() -> None:
    jobs = [job("J1", "a", 0, 1, 150), job("J2", "b", 0, 1, 150)]
    res = run("gavel", jobs, "g=1")
    # X = 1/2 each: J1, J2, J1 (ends at 250), then J2 alone (ends at 350)
    assert finishes(res) == {"J1": 250, "J2": 350}
    assert sum(j.preemptions for j in res.jobs) == 2


def test_gavel_gives_the_fast_type_to_the_job_that_gains_most() -> None:
    jobs = [job("Y", "a", 0, 1, 100, v100=1, k80=1), job("X", "b", 0, 1, 200, v100=2, k80=1)]
    res = run("gavel", jobs, "v100=1,k80=1")
    # max-min on normalised throughput: Y is as fast on k80, so X gets the V100 (FIFO: X ends at 200)
    assert finishes(res) == {"Y": 100, "X": 100}


def test_fairshare_preempts_to_give_an_arriving_team_its_share() -> None:
    jobs = [job(f"A{i}", "a", 0, 1, 200) for i in range(1, 5)] + [job("B1", "b", 100, 2, 100)]
    res = run("fairshare", jobs, "g=4")
    # at 100 each team's share is 2: A3 and A4 (last in a's FIFO order) give way to B1
    assert finishes(res) == {"A1": 200, "A2": 200, "A3": 300, "A4": 300, "B1": 200}
    assert sum(j.preemptions for j in res.jobs) == 2
    # FIFO never preempts: B1 waits for a's jobs
    assert finishes(run("fifo", jobs, "g=4"))["B1"] == 300


def test_fairshare_weights_split_the_cluster() -> None:
    from fairshare.simulate.engine import Cluster, simulate
    from fairshare.simulate.policies import make

    jobs = [job(f"A{i}", "a", 0, 1, 100) for i in range(4)] + [job(f"B{i}", "b", 0, 1, 100) for i in range(4)]
    res = simulate(jobs, Cluster.parse("g=4"), make("fairshare"), round_seconds=100, teams={"a": 3.0, "b": 1.0})
    # weights 3:1 on 4 GPUs: a runs 3 jobs in the first round, b 1; then a needs 1, b takes 3
    f = finishes(res)
    assert f == {"A0": 100, "A1": 100, "A2": 100, "A3": 200, "B0": 100, "B1": 200, "B2": 200, "B3": 200}


def test_restart_cost_is_paid_when_a_job_moves_to_another_type() -> None:
    from fairshare.simulate.engine import Cluster, Snapshot, simulate

    class Mover:
        name, stable = "mover", False

        def schedule(self, snap: Snapshot) -> dict[str, str]:
            return {st.id: ("v100" if snap.now < 100 else "k80") for st in snap.jobs}

    res = simulate(
        [job("J", "a", 0, 1, 300)], Cluster.parse("v100=1,k80=1"), Mover(), round_seconds=100, restart_seconds=40
    )
    # 100 s on v100, then k80: 40 s restart + 200 s of work -> 340
    assert res.jobs[0].finish == 340 and res.jobs[0].migrations == 1 and res.jobs[0].preemptions == 0


def test_preemptions_per_job_hour_and_the_effective_share() -> None:
    from fairshare.simulate import metrics as m

    jobs = [job(f"A{i}", "a", 0, 1, 200) for i in range(1, 5)] + [job("B1", "b", 100, 2, 100)]
    pm = m.compute(run("fairshare", jobs, "g=4"))
    # 2 preemptions over 200 + 200 + 200 + 200 + 100 s of jobs running (A3 and A4 ran 100 s, then 100 s more)
    assert pm.preemptions_per_job_hour == pytest.approx(2 / (900 / 3600))
    # one type: effective equals GPU-hours
    assert pm.min_effective_share_ratio == pytest.approx(pm.min_share_ratio)
    slow = [job("S", "a", 0, 1, 100, fast=1.0, slow=0.5), job("F", "b", 0, 1, 100, fast=1.0, slow=0.5)]
    pm = m.compute(run("fifo", slow, "fast=1,slow=1"))
    # the team whose job ran on the slow type got half its GPU-hours' worth of its best speed
    ratios = {t.team: t.effective_share_ratio / t.share_ratio for t in pm.teams}
    assert sorted(ratios.values()) == pytest.approx([0.5, 1.0])


def test_fairshare_starts_a_gang_that_fits_its_teams_total_share_but_no_single_type() -> None:
    # shares of 6 GPUs: b (V100 only) 2, c (K80 only) 2, a 2 split as 1 V100 + 1 K80 by the engine
    jobs = [job("A1", "a", 0, 2, 400, v100=1.0, k80=1.0)]
    jobs += [job(f"B{i}", "b", 0, 1, 400, v100=1.0) for i in range(3)]
    jobs += [job(f"C{i}", "c", 0, 1, 400, k80=1.0) for i in range(3)]
    engine = {"unit": "effective", "wait_margin": None}  # the engine's per-type split, no hysteresis
    # fit by total (the default): a's 2-GPU gang starts at once within its 2 GPUs
    res = run("fairshare", jobs, "v100=3,k80=3", **engine)
    assert res.rounds[0].gpus["a"] == 2 and finishes(res)["A1"] == 400
    # fit by type: 1 GPU of a type is too small for the gang; b and c take the idle GPUs and a waits
    res = run("fairshare", jobs, "v100=3,k80=3", fit="type", **engine)
    assert "a" not in res.rounds[0].gpus or res.rounds[0].gpus["a"] == 0
    assert finishes(res)["A1"] == 800


def test_fairshare_refuses_an_unknown_fit() -> None:
    from fairshare.simulate.policies import make

    with pytest.raises(ValueError, match="fit"):
        make("fairshare", fit="pool")


def test_fairshare_counts_shares_in_effective_gpus_or_in_gpus() -> None:
    # a runs 4x faster on the V100 than on a K80, b runs on K80s only (v100=2, k80=6)
    jobs = [job(f"A{i}", "a", 0, 1, 1000, v100=4.0, k80=1.0) for i in range(8)]
    jobs += [job(f"B{i}", "b", 0, 1, 1000, k80=1.0) for i in range(8)]
    # effective: a's 2 V100s count 1 each, its K80s 0.25: equal effective GPUs at a = 2 + 3.2 K80
    # (5.2 GPUs), b = 2.8 K80s: a holds 5 GPUs, b 3
    assert run("fairshare", jobs, "v100=2,k80=6", unit="effective").rounds[0].gpus == {"a": 5, "b": 3}
    # gpus (the default): 4 GPUs each, as the metrics' fair share counts them; a still gets both V100s
    res = run("fairshare", jobs, "v100=2,k80=6")
    assert res.rounds[0].gpus == {"a": 4, "b": 4}
    assert sum(1 for j in res.jobs if j.id.startswith("A") and j.finish == 250) == 2  # 1000 steps at rate 4
