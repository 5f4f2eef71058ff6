"""One reason per request, in words a committee member understands."""

from __future__ import annotations

import numpy as np

from fairshare.engine._group import Unit
from fairshare.engine._hierarchy import FillResult
from fairshare.engine._problem import Problem
from fairshare.engine._result import Reason, ReasonCode

TOL = 1e-4  # above the water-filling's freeze margin (1e-6 + 1e-7 x value) at realistic sizes


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v - round(v)) < 1e-6 else f"{v:,.1f}"


def explain_requests(
    problem: Problem,
    fill: FillResult,
    demand: np.ndarray,
    floors: dict[tuple[int, int], float],
    dropped: dict[int, float],
) -> list[Reason]:
    pr = problem
    x = fill.x
    got = np.bincount(pr.cell_req, weights=x, minlength=pr.n_requests)
    e = np.bincount(pr.cell_req, weights=x * pr.cell_speed, minlength=pr.n_requests)
    has_cells = np.zeros(pr.n_requests, bool)
    has_cells[pr.cell_req] = True
    cell_type = pr.pool_type[pr.cell_pool]
    limit_tight = []
    for node, gpu, cap in pr.limits:
        used = float(x[pr.subtree_type_cells(node, gpu)].sum())
        if used >= cap - TOL:
            limit_tight.append((node, gpu, cap))
    guar_tight = []
    for (node, gpu), floor in floors.items():
        used = float(x[pr.subtree_type_cells(node, gpu)].sum())
        if floor > 0 and used <= floor + TOL:
            guar_tight.append((node, gpu, floor))
    levels = [round(v, 6) for v in (e / pr.req_weight).tolist()]
    met = (got >= demand - TOL).tolist()
    has = has_cells.tolist()
    req_node = pr.req_node.tolist()
    # the pools each request can use, as a bit set (or, with many pools, a frozenset)
    if len(pr.pool_cap) <= 62:
        usable_of = np.zeros(pr.n_requests, dtype=np.int64)
        np.bitwise_or.at(usable_of, pr.cell_req, np.left_shift(1, pr.cell_pool))
        usable_key: list[int] | list[frozenset[int]] = usable_of.tolist()
    else:
        usable_key = [frozenset(pr.cell_pool[c].tolist()) for c in pr.cells_of_request]
    fmt_cache: dict[float, str] = {}
    tail_cache: dict[tuple, tuple[tuple[str, ...], str]] = {}  # (team, usable, tight pools, got some) -> (pools, text)
    reasons = []
    for r in range(pr.n_requests):
        level = levels[r]
        if r in dropped:
            fair = round(dropped[r], 6)
            short = round(float(pr.req_min[r] - fair), 6)
            reasons.append(
                Reason(
                    ReasonCode.below_min,
                    f"not funded: its fair share was {_fmt(fair)} GPUs, {_fmt(short)} short of its minimum of "
                    f"{_fmt(pr.req_min[r])}; those GPUs went to the other requests",
                    level=0.0,
                    shortfall=short,
                )
            )
            continue
        if not has[r]:
            reasons.append(
                Reason(
                    ReasonCode.no_usable_pool,
                    "can use no pool: no pool has a GPU type it lists a speed for at a site it allows",
                    level=0.0,
                )
            )
            continue
        if met[r]:
            d = float(demand[r])
            text = fmt_cache.get(d)
            if text is None:
                text = fmt_cache[d] = f"got all {_fmt(d)} GPUs it asked for"
            reasons.append(Reason(ReasonCode.demand_met, text, level=level))
            continue
        node = req_node[r]
        team = pr.node_names[node]
        if limit_tight or guar_tight:
            mine_cells = pr.cells_of_request[r]
            path = set(pr.ancestors(node))
        if limit_tight:
            usable_types = set(cell_type[mine_cells].tolist())
            lim = next(((n, g, c) for n, g, c in limit_tight if n in path and g in usable_types), None)
            if lim is not None:
                n, g, c = lim
                reasons.append(
                    Reason(
                        ReasonCode.limit,
                        f"capped by node {pr.node_names[n]}'s limit of {_fmt(c)} {pr.types[g]} GPUs",
                        level=level,
                        node=pr.node_names[n],
                    )
                )
                continue
        if guar_tight:
            types_held = set(cell_type[mine_cells][x[mine_cells] > TOL].tolist())
            gua = next(((n, g, f) for n, g, f in guar_tight if n in path and g in types_held), None)
            if gua is not None:
                n, g, f = gua
                reasons.append(
                    Reason(
                        ReasonCode.guarantee,
                        f"held up by node {pr.node_names[n]}'s guarantee of {_fmt(f)} "
                        f"{pr.types[g]} GPUs, above its fair share",
                        level=level,
                        node=pr.node_names[n],
                    )
                )
                continue
        outcome = fill.outcomes.get(Unit(False, r))
        tight = tuple(outcome.freeze.tight_pools) if outcome else ()
        key = (node, usable_key[r], tight, level > TOL)
        tail = tail_cache.get(key)
        if tail is None:
            usable_pools = sorted(set(pr.cell_pool[pr.cells_of_request[r]].tolist()))
            pools = tuple(pr.pool_names[p] for p in tight if p in usable_pools)
            tail = tail_cache[key] = (
                pools,
                f" among the requests of {team}; "
                + (
                    f"bottleneck pools: {', '.join(pools)}"
                    if pools
                    else _taken(pr, team, usable_pools, fill.allotments.get(node), level > TOL)
                ),
            )
        pools, text = tail
        reasons.append(
            Reason(
                ReasonCode.fair_share,
                f"frozen at fair level {level:,.2f} (effective GPUs per unit of weight)" + text,
                level=level,
                node=team,
                pools=pools,
            )
        )
    return reasons


def _taken(pr: Problem, team: str, usable: list[int], allotment: np.ndarray | None, got_some: bool) -> str:
    """Why a request stopped with no bottleneck among its own pools: its team's share of the
    pools it can use is all taken, or holds none of them (the team's share was decided one
    level up, by what the team as a whole could use).  Then all it can have is what other
    teams leave idle in its pools (the leftover rounds), and nothing there was left over."""
    held = [p for p in usable if allotment is not None and allotment[p] > TOL]
    if held:
        return f"{team}'s GPUs in the pools it can use ({_names(pr, held)}) are all taken"
    where = f"{team}'s share holds no GPU it can use (it runs only on {_names(pr, usable)})"
    return where + (
        "; what it has are GPUs other teams left idle there" if got_some else "; no GPU there was left idle"
    )


def _names(pr: Problem, pools: list[int], most: int = 4) -> str:
    names = [pr.pool_names[p] for p in pools[:most]]
    return ", ".join(names) + (f" and {len(pools) - most} more" if len(pools) > most else "")
