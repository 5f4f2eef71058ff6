"""The allocation engine: a pure function from a Scenario to an Allocation.  No I/O here."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fairshare.engine._guarantees import InfeasibleGuarantees, check_floors, joint_floors, usable_floors
from fairshare.engine._highs import SolverError
from fairshare.engine._hierarchy import FillResult, fill
from fairshare.engine._problem import Problem, compile_scenario
from fairshare.engine._reasons import explain_requests
from fairshare.engine._result import (
    Allocation, Fairness, NodeResult, PoolResult, Reason, RequestResult, Stats,
)
from fairshare.engine._rounding import round_allocation
from fairshare.engine._waterfill import GroupInfeasible
from fairshare.scenario import Scenario

__all__ = ["allocate", "Allocation", "InfeasibleGuarantees", "Reason", "RequestResult", "solve_exact", "ExactSolution"]


class ExactSolution:
    """The exact (fractional) solution with everything needed to publish and explain it."""

    def __init__(self, problem: Problem, fill: FillResult, demand: np.ndarray,
                 floors: dict[tuple[int, int], float], dropped: dict[int, float], min_rounds: int):
        self.problem, self.fill, self.demand, self.floors = problem, fill, demand, floors
        self.dropped, self.min_rounds = dropped, min_rounds


def solve_exact(scenario: Scenario) -> ExactSolution:
    """Water-fill, dropping requests whose fair share is below their minimum one at a time
    (the furthest below first) and re-solving so their GPUs are shared out again."""
    problem = compile_scenario(scenario)
    demand = problem.req_demand.copy()
    dropped: dict[int, float] = {}
    rounds = 0
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
            result = fill(problem, demand, floors)
        except GroupInfeasible as e:  # check_floors proved the floors hold: numerical trouble, not the input
            raise SolverError(f"the LP of {problem.node_names[e.parent]!r}'s group stayed infeasible after "
                              "relaxing its floors by the solver's tolerances") from None
        got = np.bincount(problem.cell_req, weights=result.x, minlength=problem.n_requests)
        short = np.flatnonzero((problem.req_min > 0) & (demand > 0) & (got < problem.req_min - 1e-6)).tolist()
        if not short:
            return ExactSolution(problem, result, demand, floors, dropped, rounds)
        worst = min(short, key=lambda r: (got[r] / problem.req_min[r], problem.req_ids[r]))
        dropped[worst] = float(got[worst])
        demand[worst] = 0.0


def allocate(scenario: Scenario, fractional: bool = False) -> Allocation:
    """Who gets how many GPUs of which pool, and why.  Raises InfeasibleGuarantees."""
    start = time.perf_counter()
    sol = solve_exact(scenario)
    pr = sol.problem
    if fractional:
        x = sol.fill.x
        reasons = explain_requests(pr, sol.fill, sol.demand, sol.floors, sol.dropped)
    else:
        # rounding is mostly a HiGHS solve, which releases the GIL: explain meanwhile
        funded_min = np.where(sol.demand > 0, pr.req_min, 0.0)
        with ThreadPoolExecutor(max_workers=1) as pool:
            rounded = pool.submit(round_allocation, pr, sol.fill.x, sol.floors, funded_min)
            reasons = explain_requests(pr, sol.fill, sol.demand, sol.floors, sol.dropped)
            x = rounded.result().astype(float)
    published = np.bincount(pr.cell_req, weights=x, minlength=pr.n_requests)
    all_met = (published >= pr.req_demand - 1e-6).tolist()
    reasons = [Reason("demand_met", f"got all {int(pr.req_demand[r]):,} GPUs it asked for", level=why.level)
               if why.code in ("fair_share", "limit") and all_met[r] else why  # rounding gave it the rest
               for r, why in enumerate(reasons)]
    elapsed = time.perf_counter() - start
    return _publish(scenario, pr, sol, x, reasons, fractional, elapsed)


def _publish(scenario: Scenario, pr: Problem, sol: ExactSolution, x: np.ndarray, reasons: list[Reason],
             fractional: bool, elapsed: float) -> Allocation:
    def num(v: float) -> float:
        return round(float(v), 9) if fractional else int(round(v))

    requests = []
    e_req = np.bincount(pr.cell_req, weights=x * pr.cell_speed, minlength=pr.n_requests)
    gpus_of: list[dict[str, float]] = [{} for _ in range(pr.n_requests)]
    placed = np.flatnonzero(x > 1e-9)
    names = pr.pool_names
    for r, p, v in zip(pr.cell_req[placed].tolist(), pr.cell_pool[placed].tolist(), x[placed].tolist()):
        gpus_of[r][names[p]] = num(v)
    weights = pr.req_weight.tolist()
    effective = e_req.tolist()
    for r, req in enumerate(scenario.requests):
        requests.append(RequestResult(
            id=req.id, team=req.team, demand=req.gpus, min=req.min, weight=round(weights[r], 6),
            gpus=gpus_of[r], effective=round(effective[r], 9), reason=reasons[r]))
    cell_type = pr.pool_type[pr.cell_pool]
    nodes = []
    for n in range(pr.n_nodes):
        inside = pr.subtree_requests(n)
        sub = pr.subtree_cells(n)
        x_sub, type_sub = x[sub], cell_type[sub]
        by_type = {pr.types[g]: num(x_sub[type_sub == g].sum()) for g in range(len(pr.types))}
        nodes.append(NodeResult(
            name=pr.node_names[n], parent=pr.node_names[pr.node_parent[n]] if pr.node_parent[n] >= 0 else None,
            weight=float(pr.node_weight[n]), demand=int(pr.req_demand[inside].sum()),
            effective=round(float(e_req[inside].sum()), 9), gpus={k: v for k, v in by_type.items() if v > 0}))
    used = np.bincount(pr.cell_pool, weights=x, minlength=len(pr.pool_cap))
    pools = [PoolResult(p.name, p.gpu, p.site, p.gpus, num(used[i])) for i, p in enumerate(scenario.pools)]
    return Allocation(
        scenario=scenario.name, fractional=fractional, requests=requests, nodes=nodes, pools=pools,
        fairness=_fairness(pr, x, e_req, sol),
        stats=Stats(round(elapsed, 4), sol.fill.lp_solves, sol.fill.levels, sol.fill.groups, sol.min_rounds))


def _fairness(pr: Problem, x: np.ndarray, e_req: np.ndarray, sol: ExactSolution) -> Fairness:
    teams = sorted(set(pr.req_node.tolist()))
    got = np.bincount(pr.cell_req, weights=x, minlength=pr.n_requests)
    ratios, shares = [], []
    for t in teams:
        mine = pr.req_node == t
        ratios.append(e_req[mine].sum() / pr.node_weight[t])
        asked = pr.req_demand[mine].sum()
        shares.append((got[mine].sum() / asked if asked else 1.0, pr.node_names[t]))
    v = np.array(ratios)
    jain = float(v.sum() ** 2 / (len(v) * (v ** 2).sum())) if len(v) and (v ** 2).sum() > 0 else 1.0
    least = min(shares) if shares else None
    return Fairness(
        jain_index=round(jain, 6), least_satisfied_team=least[1] if least else None,
        least_satisfied_share=round(float(least[0]), 6) if least else None,
        below_min=[pr.req_ids[r] for r in sorted(sol.dropped)])
