"""One reason per request, in words a committee member understands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from fairshare.engine._counterfactual import CAPACITY_REACH, Cause
from fairshare.engine._group import Unit
from fairshare.engine._hierarchy import FillResult
from fairshare.engine._problem import Problem
from fairshare.engine._result import Reason, ReasonCode

TOL = 1e-4  # above the water-filling's freeze margin (1e-6 + 1e-7 x value) at realistic sizes


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v - round(v)) < 1e-6 else f"{v:,.1f}"


@dataclass(frozen=True)
class Claim:
    """A reason that names a cause, and the way the request moves without it (see _counterfactual)."""

    cause: Cause
    sign: int  # +1: with the cause gone (a bigger pool) it gets more; -1: it gets less
    reason: Reason


@dataclass(frozen=True)
class Explained:
    """One request's reason by the rule alone, and what re-solving may make of it: the claims it
    could make (limits, its branch's guarantees, other nodes' guarantees, in that order), the
    pools that may be its bottleneck, and the words when no claim holds."""

    rule: Reason
    claims: tuple[Claim, ...] = ()
    pools: tuple[int, ...] = ()
    more: float = 0.0  # GPUs a pool gets in its check: what explain's capacity lever reaches for it
    fair: Callable[[tuple[str, ...]], Reason] | None = None  # fair_share naming these pools (or none)

    def checked(self, holds: Callable[[Cause, int], bool], pool_names: list[str]) -> Reason:
        """The first claim that holds; else fair share naming the pools that hold (maybe none)."""
        for claim in self.claims:
            if holds(claim.cause, claim.sign):
                return claim.reason
        if self.fair is None:
            return self.rule
        return self.fair(tuple(pool_names[p] for p in self.pools if holds(Cause("pool", p, more=self.more), +1)))


def explain_requests(
    problem: Problem,
    fill: FillResult,
    demand: np.ndarray,
    floors: dict[tuple[int, int], float],
    dropped: dict[int, float],
    claims: bool = False,
) -> list[Explained]:
    """Every request's reason by the rule; with `claims`, also every cause its reason could name,
    for the caller to re-solve (engine/_counterfactual.py)."""
    pr = problem
    x = fill.x
    got = np.bincount(pr.cell_req, weights=x, minlength=pr.n_requests)
    e = np.bincount(pr.cell_req, weights=x * pr.cell_speed, minlength=pr.n_requests)
    has_cells = np.zeros(pr.n_requests, bool)
    has_cells[pr.cell_req] = True
    cell_type = pr.pool_type[pr.cell_pool]
    limit_tight = []
    for node, gpu, cap in pr.limits:
        mask = pr.subtree_type_cells(node, gpu)
        used = float(x[mask].sum())
        reach = float(pr.pool_cap[np.unique(pr.cell_pool[mask])].sum())  # the type-gpu GPUs it could use
        if used >= cap - TOL and cap < reach - TOL:  # a limit at or above all it could use binds nothing
            limit_tight.append((node, gpu, cap))
    guar_tight = []
    above: set[int] = set()  # nodes above their fair level in their parent's group (the rule's guess)
    for (node, gpu), floor in floors.items():
        used = float(x[pr.subtree_type_cells(node, gpu)].sum())
        if floor > 0 and used <= floor + TOL:
            guar_tight.append((node, gpu, floor))
            outcome = fill.outcomes.get(Unit(True, node))
            value = float(e[pr.subtree_requests(node)].sum())
            if outcome is None or value > outcome.share * outcome.freeze.level * (1 + 1e-6) + TOL:
                above.add(node)
    pool_used = np.bincount(pr.cell_pool, weights=x, minlength=len(pr.pool_cap))
    full_pools = set(np.flatnonzero(pool_used >= pr.pool_cap - TOL).tolist())
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
    out: list[Explained] = []
    for r in range(pr.n_requests):
        level = levels[r]
        if r in dropped:
            out.append(Explained(_below_min(pr, x, r, dropped[r])))
            continue
        if not has[r]:
            out.append(
                Explained(
                    Reason(
                        ReasonCode.no_usable_pool,
                        "can use no pool: no pool has a GPU type it lists a speed for at a site it allows",
                        level=0.0,
                    )
                )
            )
            continue
        if met[r]:
            d = float(demand[r])
            text = fmt_cache.get(d)
            if text is None:
                text = fmt_cache[d] = f"got all {_fmt(d)} GPUs it asked for"
            out.append(Explained(Reason(ReasonCode.demand_met, text, level=level)))
            continue
        node = req_node[r]
        team = pr.node_names[node]
        mine_cells = pr.cells_of_request[r]
        usable_types = set(cell_type[mine_cells].tolist())
        path = set(pr.ancestors(node)) if limit_tight or guar_tight else set()
        lims = [(n, g, c) for n, g, c in limit_tight if n in path and g in usable_types]
        types_held = set(cell_type[mine_cells][x[mine_cells] > TOL].tolist()) if guar_tight else set()
        if claims:  # every tight guarantee on its branch: the re-solve decides
            own = [(n, g, f) for n, g, f in guar_tight if n in path and g in usable_types]
        else:  # the rule alone: a guarantee of a node above its fair level, of a type it holds
            own = [(n, g, f) for n, g, f in guar_tight if n in path and n in above and g in types_held]
        found: list[Claim] = [Claim(Cause("limit", n, g), +1, _limit_reason(pr, n, g, c, level)) for n, g, c in lims]
        found += [Claim(Cause("guarantee", n, g), -1, _raised_reason(pr, n, g, f, level)) for n, g, f in own]
        if claims:
            found += [
                Claim(Cause("guarantee", n, g), +1, _held_down_reason(pr, n, g, f, level))
                for n, g, f in guar_tight
                if n not in path and g in usable_types
            ]
        outcome = fill.outcomes.get(Unit(False, r))
        tight = tuple(outcome.freeze.tight_pools) if outcome else ()
        key = (node, usable_key[r], tight, level > TOL)
        tail = tail_cache.get(key)
        if tail is None:
            usable_pools = sorted(set(pr.cell_pool[pr.cells_of_request[r]].tolist()))
            pools = tuple(pr.pool_names[p] for p in tight if p in usable_pools)
            tail = tail_cache[key] = (
                pools,
                f" among the requests of {team}"
                + ("; " if level > TOL else ": ")
                + (
                    f"bottleneck pools: {', '.join(pools)}"
                    if pools
                    else _taken(pr, team, usable_pools, fill.allotments.get(node), level > TOL)
                ),
            )
        pools, text = tail
        rule = found[0].reason if found else _fair_reason(level, team, text, pools)
        if not claims:
            out.append(Explained(rule))
            continue
        usable_pools = sorted(set(pr.cell_pool[mine_cells].tolist()))
        taken = _taken(pr, team, usable_pools, fill.allotments.get(node), level > TOL)
        sep = "; " if level > TOL else ": "
        plain = _fair_reason(level, team, f" among the requests of {team}{sep}{taken}", ())
        out.append(
            Explained(
                rule,
                tuple(found),
                tuple(p for p in usable_pools if p in full_pools),
                CAPACITY_REACH * float(pr.req_demand[r]),
                partial(_named_or_plain, level, team, plain),
            )
        )
    return out


def _fair_reason(level: float, team: str, text: str, pools: tuple[str, ...]) -> Reason:
    head = f"frozen at fair level {level:,.2f} (effective GPUs per unit of weight)" if level > TOL else "got no GPU"
    return Reason(ReasonCode.fair_share, head + text, level=level, node=team, pools=pools)


def _named_or_plain(level: float, team: str, plain: Reason, pools: tuple[str, ...]) -> Reason:
    """Fair share naming the pools where more GPUs give it more, or, if none, `plain`."""
    if not pools:
        return plain
    if level <= TOL:  # what happened, then what would change it
        return replace(plain, text=f"{plain.text}; more GPUs in {', '.join(pools)} would give it some", pools=pools)
    more = f" among the requests of {team}; bottleneck pools: {', '.join(pools)} (more GPUs there give it more)"
    return _fair_reason(level, team, more, pools)


def _node_reason(pr: Problem, code: ReasonCode, n: int, level: float, text: str) -> Reason:
    """A reason naming node n's own limit or guarantee (the lever is on that node)."""
    return Reason(code, text, level=level, node=pr.node_names[n])


def _limit_reason(pr: Problem, n: int, g: int, cap: float, level: float) -> Reason:
    return _node_reason(
        pr, ReasonCode.limit, n, level, f"capped by node {pr.node_names[n]}'s limit of {_fmt(cap)} {pr.types[g]} GPUs"
    )


def _raised_reason(pr: Problem, n: int, g: int, floor: float, level: float) -> Reason:
    name = pr.node_names[n]
    text = f"held up by node {name}'s guarantee of {_fmt(floor)} {pr.types[g]} GPUs, above its fair share"
    return _node_reason(pr, ReasonCode.guarantee, n, level, text)


def _held_down_reason(pr: Problem, n: int, g: int, floor: float, level: float) -> Reason:
    name = pr.node_names[n]
    text = (
        f"held down by node {name}'s guarantee of {_fmt(floor)} {pr.types[g]} GPUs: "
        f"those GPUs are {name}'s above its fair share"
    )
    return _node_reason(pr, ReasonCode.guarantee, n, level, text)


def _below_min(pr: Problem, x: np.ndarray, r: int, fair_share: float) -> Reason:
    """Not funded: say where the GPUs of its fair share went (to other requests, or idle)."""
    fair = round(fair_share, 6)
    short = round(float(pr.req_min[r] - fair), 6)
    pools = sorted(set(pr.cell_pool[pr.cells_of_request[r]].tolist()))
    used = np.bincount(pr.cell_pool, weights=x, minlength=len(pr.pool_cap))
    idle = float(sum(max(0.0, pr.pool_cap[p] - used[p]) for p in pools))
    if idle < TOL:
        where = "those GPUs went to the other requests"
    elif idle >= fair - TOL and fair > TOL:
        where = f"no other request can use those GPUs: {_fmt(idle)} GPUs it could use stay idle"
    else:
        where = f"other requests use part of them; {_fmt(idle)} GPUs it could use stay idle"
    return Reason(
        ReasonCode.below_min,
        f"not funded: its fair share was {_fmt(fair)} GPUs, {_fmt(short)} short of its minimum of "
        f"{_fmt(pr.req_min[r])}; {where}",
        level=0.0,
        shortfall=short,
    )


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
