"""The engine's fast path for the simulator's small repeated solves (engine/shares.py) gives
`allocate`'s answers on every call of a replay: the fairshare policy's team shares and the gavel
policy's per-job shares."""

from __future__ import annotations

import numpy as np
import pytest

from fairshare.engine import _hierarchy as hierarchy
from fairshare.engine import allocate
from fairshare.engine._allocate import solve_problem
from fairshare.engine._waterfill import water_fill_group
from fairshare.engine.shares import TeamShares, flat_scenario, identical_requests, request_shares
from fairshare.scenario import OrgNode, Pool, Request, Scenario
from fairshare.simulate.engine import Cluster, simulate
from fairshare.simulate.policies import fairshare as fairshare_policy
from fairshare.simulate.policies import gavel as gavel_policy
from fairshare.simulate.policies import make
from fairshare.simulate.trace import synthetic

TOL = 1e-6  # GPUs; the published numbers are rounded to 9 decimals, the solver's margins are 1e-9 relative


class CheckedTeamShares(TeamShares):
    """TeamShares that compares every answer (memoised, fitted or solved) with allocate's."""

    calls = 0

    def __call__(self, demand):
        got = super().__call__(demand)
        want = allocate(self.scenario(demand), fractional=True, check_reasons=False)
        for team in self.teams:
            node = want.node(self.node[team]).gpus
            for t in self.types:
                assert got[team][t] == pytest.approx(float(node.get(t, 0.0)), abs=TOL), (team, t, demand)
        CheckedTeamShares.calls += 1
        return got


@pytest.mark.parametrize("cluster", ["8:8:8", "40:40:40"])
def test_fairshare_team_shares_equal_allocate_on_every_call(monkeypatch, cluster: str) -> None:
    monkeypatch.setattr(fairshare_policy, "TeamShares", CheckedTeamShares)
    CheckedTeamShares.calls = 0
    pol = make("fairshare", unit="effective")  # reads the engine's shares on every call (the default asks only
    # when a gang has room on two types)
    simulate(synthetic(60, 4, 6.0, seed=3), Cluster.parse(cluster), pol, round_seconds=360.0)
    engine = pol._engine
    assert CheckedTeamShares.calls == engine.solves + engine.fitted + engine.memo_hits > 0
    if cluster == "8:8:8":  # a loaded cluster: the engine solves, from the root's group when it can
        assert engine.solves > 10
        assert engine.root_only > 0
    else:  # room for everyone on its fastest type most of the time
        assert engine.fitted > 10


def one_request_per_job(capacity, requests) -> Scenario:
    """The flat problem with every job its own request (identical jobs not grouped)."""
    return Scenario(
        name="one-per-job",
        pools=[Pool(name=t, gpu=t, gpus=n) for t, n in capacity.items()],
        org=OrgNode(name="jobs"),
        requests=[Request(id=f"j{i}", team="jobs", gpus=g, speed=dict(sp)) for i, (g, sp) in enumerate(requests)],
    )


def test_gavel_request_shares_equal_allocate_on_every_call(monkeypatch) -> None:
    """Every call: each job's GPUs per type are its class's in allocate(flat_scenario) divided
    equally, and its effective GPUs are what allocate gives it as a request of its own."""
    calls, grouped = [], []

    def checked(capacity, requests, group=True):
        assert group  # the policy's default
        got = request_shares(capacity, requests)
        classes, of = identical_requests(requests)
        want = allocate(flat_scenario(capacity, requests), fractional=True, check_reasons=False).requests
        alone = allocate(one_request_per_job(capacity, requests), fractional=True, check_reasons=False).requests
        assert len(got) == len(requests) == len(alone) and len(want) == len(classes)
        for i, (g, (_, speed)) in enumerate(zip(got, requests, strict=True)):
            k = classes[of[i]][2]
            for t in capacity:
                assert g.get(t, 0.0) == pytest.approx(float(want[of[i]].gpus.get(t, 0.0)) / k, abs=TOL), (t, requests)
            effective = sum(n * dict(speed)[t] for t, n in g.items())
            assert effective == pytest.approx(alone[i].effective, abs=10 * TOL), (i, requests)
        calls.append(len(requests))
        grouped.append(len(requests) - len(classes))
        return got

    monkeypatch.setattr(gavel_policy, "request_shares", checked)
    simulate(synthetic(40, 4, 6.0, seed=3), Cluster.parse("8:8:8"), make("gavel"), round_seconds=360.0)
    assert len(calls) > 10 and max(calls) > 5
    assert max(grouped) > 0  # some calls had identical jobs to group


def test_team_shares_fit_on_the_fastest_type_without_a_solve() -> None:
    engine = TeamShares({"v100": 8, "k80": 8}, {"a": 1.0, "b": 1.0})
    fast, slow = (("v100", 1.0), ("k80", 0.5)), (("v100", 1.0), ("k80", 2.0))
    got = engine([(("a", fast), 4), (("b", slow), 8)])
    assert got == {"a": {"v100": 4.0, "k80": 0.0}, "b": {"v100": 0.0, "k80": 8.0}}
    assert (engine.fitted, engine.solves) == (1, 0)
    crowded = engine([(("a", fast), 8), (("b", fast), 8)])  # 16 GPUs want the 8 V100s: shared
    assert crowded["a"]["v100"] == pytest.approx(crowded["b"]["v100"]) and engine.solves == 1
    assert engine([(("b", fast), 8), (("a", fast), 8)]) is crowded  # the same demand in another order: memoised
    assert engine.memo_hits == 1


@pytest.mark.parametrize(
    ("n", "cluster", "seed", "skips"),
    [(40, "8:8:8", 1, True), (60, "16:4:4", 2, True), (30, "v100=6,k80=12", 3, False)],
)
def test_gavel_skipping_rounds_without_time_sharing_changes_nothing(
    n: int, cluster: str, seed: int, skips: bool
) -> None:
    """gavel settles while no job time-shares; the rounds skipped then are credited to its
    priorities, so completion times equal those of a replay that calls it every round."""

    class EveryRound:
        def __init__(self) -> None:
            self.inner, self.name, self.stable = make("gavel"), "gavel", False

        def schedule(self, snap):
            return self.inner.schedule(snap)

    jobs = synthetic(n, 3, 8.0, seed=seed)
    fast = simulate(jobs, Cluster.parse(cluster), make("gavel"), round_seconds=360.0, restart_seconds=30.0)
    slow = simulate(jobs, Cluster.parse(cluster), EveryRound(), round_seconds=360.0, restart_seconds=30.0)
    assert [(j.id, j.start, j.finish, j.preemptions, j.migrations) for j in fast.jobs] == [
        (j.id, j.start, j.finish, j.preemptions, j.migrations) for j in slow.jobs
    ]
    assert (fast.policy_calls < slow.policy_calls) == skips  # the last one time-shares all along


@pytest.mark.parametrize("seed", range(6))
def test_group_cache_gives_the_lps_numbers(seed: int) -> None:
    """Teams' groups answered by the cache (memoised: engine/_groupcache.py) give the GPUs per
    cell that solving them gives, bit for bit, on random demands loose and tight."""
    import numpy as np

    from fairshare.engine._allocate import solve_problem
    from fairshare.engine._groupcache import GroupCache

    rng = np.random.default_rng(seed)
    capacity = {"v100": int(rng.integers(4, 40)), "p100": int(rng.integers(4, 40)), "k80": int(rng.integers(4, 40))}
    teams = {f"t{i}": float(rng.integers(1, 4)) for i in range(4)}
    profiles = [(("v100", 1.0), ("p100", 0.6), ("k80", 0.3)), (("v100", 1.0), ("p100", 0.8)), (("p100", 1.0),)]
    engine = TeamShares(capacity, teams)
    cache = GroupCache()
    for _ in range(15):
        demand = {}
        for team in teams:
            for speed in profiles:
                if rng.random() < 0.6:
                    demand[(team, speed)] = int(rng.integers(1, 12))
        key = tuple(sorted(demand.items()))
        pr = engine._problem(key)
        want = solve_problem(pr, threads=1).fill.x
        for _ in range(2):  # the second time the groups are memoised
            got = solve_problem(pr, threads=1, cache=cache).fill.x
            assert np.array_equal(got, want)
    assert cache.memo_hits > 0


def test_team_shares_from_the_root_alone_or_in_full_equal_allocate() -> None:
    """Random demands on a congested cluster, some kinds unable to run on some types: the
    shares read from the root's group alone (every kind of a team runs everywhere the team
    got GPUs) and those solved in full (otherwise) both equal allocate's."""
    rng = np.random.default_rng(7)
    types = ["v100", "p100", "k80"]
    checked = CheckedTeamShares({"v100": 6, "p100": 6, "k80": 6}, {"a": 1.0, "b": 2.0, "c": 1.0, "d": 0.5})
    for _ in range(60):
        demand = {}
        for team in checked.teams:
            for _ in range(int(rng.integers(0, 4))):
                usable = [t for t in types if t == "v100" or rng.uniform() < 0.85]
                speed = tuple((t, 1.0 if t == "v100" else round(float(rng.uniform(0.2, 1.2)), 2)) for t in usable)
                demand[(team, speed)] = demand.get((team, speed), 0) + int(rng.integers(1, 9))
        checked(list(demand.items()))
    assert checked.root_only > 10  # the root's group alone
    assert checked.solves - checked.root_only > 10  # in full: a kind that cannot run where its team got GPUs


def test_a_problem_solved_again_takes_every_group_from_the_cache(monkeypatch) -> None:
    """The root's group is memoised like the teams' (a call that falls back to the full solve
    then does not solve the root's group a second time), with the same answer."""
    engine = TeamShares({"v100": 4, "k80": 4}, {"a": 1.0, "b": 1.0})
    both, v100 = (("v100", 1.0), ("k80", 0.5)), (("v100", 1.0),)
    key = tuple(sorted([(("a", both), 6), (("a", v100), 2), (("b", both), 6)]))
    filled = []

    def counted(*args, **kwargs):
        filled.append(1)
        return water_fill_group(*args, **kwargs)

    monkeypatch.setattr(hierarchy, "water_fill_group", counted)
    first = solve_problem(engine._problem(key), threads=1, cache=engine.groups)
    assert len(filled) >= 2  # the root's group and at least one team's
    filled.clear()
    again = solve_problem(engine._problem(key), threads=1, cache=engine.groups)
    assert not filled
    assert np.array_equal(first.fill.x, again.fill.x)
