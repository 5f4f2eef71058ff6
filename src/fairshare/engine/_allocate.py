"""The engine's pipeline: solve exactly, round to whole GPUs and explain, publish the result.

`publish` is the one place an Allocation is assembled (requests, nodes, pools, fairness), so
every way of solving (plain `allocate`, the overrides' reduction) reports numbers the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from fairshare.engine._counterfactual import MORE, Counterfactuals, affordable
from fairshare.engine._fairness import team_fairness
from fairshare.engine._groupcache import GroupCache
from fairshare.engine._guarantees import InfeasibleGuarantees, check_floors, joint_floors, usable_floors
from fairshare.engine._hierarchy import FillResult, fill
from fairshare.engine._highs import SolverError
from fairshare.engine._placement import Replacement, replace_for_members
from fairshare.engine._problem import Problem, compile_scenario
from fairshare.engine._reasons import Explained, explain_requests
from fairshare.engine._result import (
    Allocation,
    NodeResult,
    PoolResult,
    Reason,
    ReasonCode,
    RequestResult,
    Stats,
)
from fairshare.engine._rounding import round_allocation
from fairshare.engine._sharing import with_surplus
from fairshare.engine._waterfill import GroupInfeasible
from fairshare.scenario import Scenario


@dataclass
class ExactSolution:
    """The exact (fractional) solution with everything needed to publish and explain it."""

    problem: Problem
    fill: FillResult
    demand: np.ndarray  # what each request still asks for (0 once dropped below its minimum)
    floors: dict[tuple[int, int], float]
    dropped: dict[int, float]  # request -> its fair share when it was dropped below its minimum
    min_rounds: int
    placement: Replacement | None = None  # the teams placed again for their own requests (engine/_placement.py)
    earlier_lp_solves: int = 0  # the LPs of the minimum-size rounds before the last

    @property
    def below_min(self) -> list[str]:
        """Ids of the requests not funded below their minimum, in the problem's order."""
        return [self.problem.req_ids[r] for r in sorted(self.dropped)]

    def stats(self, elapsed: float) -> Stats:
        lp_solves = self.earlier_lp_solves + self.fill.lp_solves
        return Stats(round(elapsed, 4), lp_solves, self.fill.levels, self.fill.groups, self.min_rounds)


def solve_exact(scenario: Scenario) -> ExactSolution:
    """Water-fill; while funded requests are below their minimum, drop some of them (their
    demand goes to 0) and solve again, so their GPUs are shared out (drops_of_round)."""
    return solve_problem(compile_scenario(scenario))


def solve_problem(problem: Problem, threads: int | None = None, cache: GroupCache | None = None) -> ExactSolution:
    """`solve_exact` of a compiled problem (the counterfactual checks re-solve changed copies;
    engine/shares.py builds one without a Scenario); threads=1 solves the groups one after
    another on this thread (small problems: no pool); `cache`: groups of requests seen before
    or fitting at once are answered without an LP (engine/_groupcache.py; numbers only)."""
    demand = problem.req_demand.copy()
    dropped: dict[int, float] = {}
    rounds = solves = 0
    while True:
        rounds += 1
        floors = usable_floors(problem, demand)
        try:
            check_floors(problem, demand, floors)
        except InfeasibleGuarantees:
            if not dropped:  # the scenario's own guarantees cannot hold: the user's to fix
                raise
            floors = joint_floors(problem, demand, floors)  # they held before the drop took demand away
            check_floors(problem, demand, floors)
        try:
            result = fill(problem, demand, floors, threads=threads, cache=cache)
        except GroupInfeasible as e:  # check_floors proved the floors hold: numerical trouble, not the input
            raise SolverError(
                f"the LP of {problem.node_names[e.parent]!r}'s group stayed infeasible after "
                "relaxing its floors by the solver's tolerances"
            ) from None
        placement = replace_for_members(problem, result.x, demand, floors)
        if placement.teams:
            result = replace(result, x=placement.x, lp_solves=result.lp_solves + placement.lp_solves)
        got = np.bincount(problem.cell_req, weights=result.x, minlength=problem.n_requests)
        short = np.flatnonzero((problem.req_min > 0) & (demand > 0) & (got < problem.req_min - 1e-6))
        if not len(short):
            return ExactSolution(problem, result, demand, floors, dropped, rounds, placement, solves)
        solves += result.lp_solves
        for r in drops_of_round(short, got, problem.req_min, problem.req_ids):
            dropped[r] = float(got[r])
            demand[r] = 0.0


def drops_of_round(short: np.ndarray, got: np.ndarray, minimum: np.ndarray, ids: list[str]) -> list[int]:
    """Which of the requests `short` of their minimum one round drops (docs/algorithm.md): the one
    furthest below (smallest share of its minimum; ties by id), alone, as any drop can lift
    another request to its minimum once its GPUs are shared out again.  Dropping several at once
    funded fewer requests on random labs once teams are placed again for their own requests."""
    return [min(short.tolist(), key=lambda r: (got[r] / minimum[r], ids[r]))]


def settle(sol: ExactSolution, fractional: bool, check: bool = True) -> tuple[np.ndarray, list[Reason]]:
    """The published GPUs per cell (whole unless `fractional`) and every request's reason.
    With `check` (and a lab small enough for CHECK_BUDGET), a reason names a guarantee, a limit
    or a pool only if re-solving without it (with more GPUs there) moves the request its way."""
    pr = sol.problem
    claims = check and affordable(pr)
    explain = partial(explain_requests, pr, sol.fill, sol.demand, sol.floors, sol.dropped, claims)
    if fractional:
        x, explained = sol.fill.x, explain()
    else:
        # rounding is mostly a HiGHS solve, which releases the GIL: explain meanwhile
        with ThreadPoolExecutor(max_workers=1) as pool:
            rounded = pool.submit(_round, sol)
            explained = explain()
            x = rounded.result()
    reasons = _checked(sol, x, explained, fractional) if claims else [ex.rule for ex in explained]
    reasons = with_surplus(pr, sol.floors, sol.fill.x, reasons)
    return x, [_as_published(pr, sol.fill.x, x, r, why, fractional) for r, why in enumerate(reasons)]


def _round(sol: ExactSolution) -> np.ndarray:
    pr = sol.problem
    funded_min = np.where(sol.demand > 0, pr.req_min, 0.0)
    return round_allocation(pr, sol.fill.x, sol.floors, funded_min).astype(float)


def _effective(pr: Problem, x: np.ndarray) -> np.ndarray:
    return np.bincount(pr.cell_req, weights=x * pr.cell_speed, minlength=pr.n_requests)


def _resolved(problem: Problem) -> tuple[np.ndarray, Callable[[], np.ndarray]]:
    """A changed problem's exact effective GPUs per request, and how to get them as published."""
    sol = solve_problem(problem)
    return _effective(problem, sol.fill.x), lambda: _effective(problem, _round(sol))


def _checked(sol: ExactSolution, x: np.ndarray, explained: list[Explained], fractional: bool) -> list[Reason]:
    """Each request's first claim that a re-solve confirms (at most one re-solve per cause)."""
    pr = sol.problem
    cf = Counterfactuals(pr, _resolved, _effective(pr, sol.fill.x), _effective(pr, x), fractional)
    return [
        ex.checked(lambda cause, sign: cf.holds(cause, r, sign), pr.pool_names)  # noqa: B023
        for r, ex in enumerate(explained)
    ]


def _as_published(pr: Problem, exact_x: np.ndarray, x: np.ndarray, r: int, why: Reason, fractional: bool) -> Reason:
    """The reason for the published GPUs: rounding may have given a request all it asked for,
    or none; a request with all its GPUs is told when they are not all of its fastest type."""
    cells = pr.cells_of_request[r]
    total, demand = float(x[cells].sum()), float(pr.req_demand[r])
    if not fractional and why.code in (ReasonCode.fair_share, ReasonCode.limit) and total >= demand - 1e-6:
        why = Reason(ReasonCode.demand_met, f"got all {int(demand):,} GPUs it asked for", level=why.level)
    if why.code == ReasonCode.demand_met and len(cells) and total >= demand - 1e-6:
        best = int(np.argmax(pr.cell_speed[cells]))
        eff, most = float(x[cells] @ pr.cell_speed[cells]), demand * float(pr.cell_speed[cells][best])
        if eff < most - (MORE if not fractional else 1e-4):
            gpu = pr.types[int(pr.pool_type[pr.cell_pool[cells[best]]])]
            why = replace(
                why,
                text=f"{why.text}, not all of its fastest type: {eff:,.1f} effective GPUs, {most:,.1f} on {gpu} alone",
            )
    elif not fractional and why.code == ReasonCode.fair_share and total < 0.5 and exact_x[cells].sum() > 1e-4:
        exact = float(exact_x[cells].sum())
        why = replace(why, text=f"its exact share, {exact:,.2f} GPUs, rounded down to none; {why.text}")
    return why


def _with_slack(sol: ExactSolution, x: np.ndarray, reasons: list[Reason]) -> list[Reason]:
    """Say, on each request of a team that gave up throughput so that its own requests can run
    where they can (engine/_placement.py), where it runs and what the team gave up."""
    rep, pr = sol.placement, sol.problem
    if rep is None or not rep.slack_used:
        return reasons
    out = list(reasons)
    for team, given in rep.slack_used.items():
        name = pr.node_names[team]
        share = given / max(rep.value[team], 1e-12)
        for r in np.flatnonzero(pr.req_node == team).tolist():
            cells = pr.cells_of_request[r]
            sites = sorted({pr.pool_site[p] for p in pr.cell_pool[cells[x[cells] > 1e-9]].tolist()})
            usable = {pr.pool_site[p] for p in pr.cell_pool[cells].tolist()}
            if not sites or len(usable) == len({pr.pool_site[p] for p in range(len(pr.pool_cap))}):
                continue  # only the requests that cannot run everywhere were placed for
            note = (
                f"; placed in {', '.join(sites)} within {name}'s share: {name} gives up "
                f"{given:,.0f} effective GPUs ({share:.1%}) so that it can run"
            )
            out[r] = replace(out[r], text=out[r].text + note, node=out[r].node or name)
    return out


def allocate(scenario: Scenario, fractional: bool = False, *, check_reasons: bool = True) -> Allocation:
    """Who gets how many GPUs of which pool, and why.  Raises InfeasibleGuarantees.
    check_reasons=False skips the re-solves that confirm each named cause (`settle`): for
    callers that read only the numbers (a lever search, a trace replay)."""
    start = time.perf_counter()
    sol = solve_exact(scenario)
    x, reasons = settle(sol, fractional, check_reasons)
    reasons = _with_slack(sol, x, reasons)
    return publish(scenario, sol.problem, x, reasons, sol, fractional, time.perf_counter() - start)


def publish(
    scenario: Scenario,
    pr: Problem,
    x: np.ndarray,
    reasons: list[Reason],
    sol: ExactSolution,
    fractional: bool,
    elapsed: float,
) -> Allocation:
    """The Allocation of GPUs `x` per cell of `pr` (the compiled `scenario`); `sol` is the solve
    that decided them (its requests below their minimum, its statistics)."""

    def num(v: float) -> float:
        return round(float(v), 9) if fractional else int(round(v))

    requests = []
    e_req = np.bincount(pr.cell_req, weights=x * pr.cell_speed, minlength=pr.n_requests)
    gpus_of: list[dict[str, float]] = [{} for _ in range(pr.n_requests)]
    placed = np.flatnonzero(x > 1e-9)
    names = pr.pool_names
    for r, p, v in zip(pr.cell_req[placed].tolist(), pr.cell_pool[placed].tolist(), x[placed].tolist(), strict=True):
        gpus_of[r][names[p]] = num(v)
    weights = pr.req_weight.tolist()
    effective = e_req.tolist()
    for r, req in enumerate(scenario.requests):
        requests.append(
            RequestResult(
                id=req.id,
                team=req.team,
                demand=req.gpus,
                min=req.min,
                weight=round(weights[r], 6),
                gpus=gpus_of[r],
                effective=round(effective[r], 9),
                reason=reasons[r],
            )
        )
    cell_type = pr.pool_type[pr.cell_pool]
    nodes = []
    for n in range(pr.n_nodes):
        inside = pr.subtree_requests(n)
        sub = pr.subtree_cells(n)
        x_sub, type_sub = x[sub], cell_type[sub]
        by_type = {pr.types[g]: num(x_sub[type_sub == g].sum()) for g in range(len(pr.types))}
        nodes.append(
            NodeResult(
                name=pr.node_names[n],
                parent=pr.node_names[pr.node_parent[n]] if pr.node_parent[n] >= 0 else None,
                weight=float(pr.node_weight[n]),
                demand=int(pr.req_demand[inside].sum()),
                effective=round(float(e_req[inside].sum()), 9),
                gpus={k: v for k, v in by_type.items() if v > 0},
            )
        )
    used = np.bincount(pr.cell_pool, weights=x, minlength=len(pr.pool_cap))
    pools = [PoolResult(p.name, p.gpu, p.site, p.gpus, num(used[i])) for i, p in enumerate(scenario.pools)]
    return Allocation(
        scenario=scenario.name,
        fractional=fractional,
        requests=requests,
        nodes=nodes,
        pools=pools,
        fairness=team_fairness(pr, x, e_req, sol.below_min),
        stats=sol.stats(elapsed),
    )
