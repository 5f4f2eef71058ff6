"""What a node is entitled to and why, in one sentence: the question every team asks.

Built from a scenario and its allocation (pure, no I/O).  A node's *fair share* is what its
weight entitles it to among its siblings if every sibling wanted more than it gets:
parent's effective GPUs x weight / sum of the siblings' weights.  Under policy.sharing surplus it
is its guarantee plus that share of what is above the siblings' guarantees (engine/_sharing.py).
A node below its fair share asked for less, was capped, or lost a request below its minimum; the
sentence says which.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fairshare.engine._result import Allocation, ReasonCode
from fairshare.scenario import Scenario, Sharing, guarantee_bases, history_boost


@dataclass
class Sibling:
    node: str
    weight: float
    demand: int
    gpus: int
    effective: float


@dataclass
class Entitlement:
    node: str
    parent: str | None
    weight: float
    gpus: dict[str, int]  # pool -> GPUs
    total: int
    demand: int  # GPUs asked for in the subtree
    effective: float  # reference-GPU equivalents
    fair_share: float | None  # effective GPUs its weight entitles it to among its siblings
    share_of_fair: float | None  # effective / fair_share
    reason: str
    reasons: dict[ReasonCode, int] = field(default_factory=dict)  # reason code -> requests in the subtree
    siblings: list[Sibling] = field(default_factory=list)

    def codes_only(self, code: ReasonCode) -> bool:
        """Did every request in the subtree end with reason `code`?"""
        return bool(self.reasons) and set(self.reasons) == {code}


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v - round(v)) < 1e-6 else f"{v:,.1f}"


def entitlements(scenario: Scenario, alloc: Allocation) -> dict[str, Entitlement]:
    """One entitlement per org node, keyed by node name, parents before children."""
    parent: dict[str, str | None] = {}
    children: dict[str, list[str]] = {}
    for node in scenario.nodes():
        children[node.name] = [c.name for c in node.children]
        for c in node.children:
            parent[c.name] = node.name
    parent[scenario.org.name] = None
    per_pool: dict[str, Counter[str]] = {n: Counter() for n in children}
    codes: dict[str, Counter[ReasonCode]] = {n: Counter() for n in children}
    levels: dict[str, list[float]] = {n: [] for n in children}
    limited_by: dict[str, Counter[str]] = {n: Counter() for n in children}
    direct_weight: dict[str, float] = {n: 0.0 for n in children}
    for r in alloc.requests:
        direct_weight[r.team] += r.weight
        cur: str | None = r.team
        while cur is not None:
            for pool, n in r.gpus.items():
                per_pool[cur][pool] += int(round(n))
            codes[cur][r.reason.code] += 1
            if r.reason.code == ReasonCode.fair_share and r.reason.level is not None:
                levels[cur].append(r.reason.level)
            if r.reason.code == ReasonCode.limit and r.reason.node:
                limited_by[cur][r.reason.node] += 1
            cur = parent[cur]
    results = {n.name: n for n in alloc.nodes}
    surplus = scenario.policy.sharing == Sharing.surplus
    base = {n: float(sum(b.values())) for n, b in guarantee_bases(scenario.org, scenario.gpu_types).items()}
    out: dict[str, Entitlement] = {}
    for name in children:
        res = results[name]
        up = parent[name]
        fair = share = None
        sibs: list[Sibling] = []
        if up is not None:
            peers = [results[s] for s in children[up]]
            # a request hanging on the parent competes as one more sibling, by its own weight
            total_w = sum(p.weight for p in peers) + direct_weight[up]
            if surplus:  # its guarantee, then its weight's part of what is above its siblings' guarantees
                above = max(results[up].effective - sum(base[s] for s in children[up]), 0.0)
                fair = base[name] + (above * res.weight / total_w if total_w else 0.0)
            else:
                fair = results[up].effective * res.weight / total_w if total_w else 0.0
            share = res.effective / fair if fair else None
            sibs = [
                Sibling(p.name, p.weight, p.demand, sum(per_pool[p.name].values()), p.effective)
                for p in peers
                if p.name != name
            ]
        gpus = {p: n for p, n in per_pool[name].items() if n}
        ent = Entitlement(
            name,
            up,
            res.weight,
            gpus,
            sum(gpus.values()),
            res.demand,
            res.effective,
            None if fair is None else round(fair, 6),
            None if share is None else round(share, 6),
            "",
            dict(codes[name]),
            sibs,
        )
        group_w = None if up is None else sum(results[s].weight for s in children[up]) + direct_weight[up]
        ent.reason = _sentence(
            ent, min(levels[name], default=None), limited_by[name], scenario, group_w, base[name] if surplus else None
        )
        out[name] = ent
    return out


def _sentence(
    e: Entitlement,
    level: float | None,
    limited_by: Counter[str],
    scenario: Scenario,
    group_weight: float | None,
    base: float | None = None,
) -> str:
    got = f"{e.node} gets {_fmt(e.total)} GPUs ({_fmt(e.effective)} effective)"
    if e.demand == 0:
        return f"{e.node} asked for no GPUs in this round."
    if e.parent is None:
        capacity = sum(p.gpus for p in scenario.pools)
        return f"{got} of the {_fmt(capacity)} in the pools, against {_fmt(e.demand)} asked for."
    if e.codes_only(ReasonCode.demand_met):
        return f"{got}: all {_fmt(e.demand)} it asked for."
    quota = f"its guarantee of {_fmt(base)} GPUs plus " if base is not None else ""
    part = " of what is above the guarantees" if base is not None else ""
    fair = (
        f"{quota}its weight {e.weight:g} of {group_weight or e.weight:g} among {e.parent}'s "
        f"children{part} entitles it to {_fmt(e.fair_share or 0)} effective GPUs when all want more, "
        f"and it has {100 * (e.share_of_fair or 0):.0f}% of that"
    )
    causes = []
    boost = boost_sentence(e.node, scenario)
    if boost:
        causes.append(boost)
    if e.reasons.get(ReasonCode.override):
        causes.append(f"{e.reasons[ReasonCode.override]} request(s) set by a committee override")
    if limited_by:
        causes.append(f"capped by the limit of {', '.join(sorted(limited_by))}")
    if e.reasons.get(ReasonCode.below_min):
        causes.append(f"{e.reasons[ReasonCode.below_min]} request(s) not funded below their minimum")
    if level is not None:
        causes.append(f"its requests stopped growing at fair level {level:,.2f}, where the pools they can use ran out")
    if e.reasons.get(ReasonCode.guarantee):
        causes.append("held up by a guarantee")
    tail = f" ({'; '.join(causes)})" if causes else ""
    return f"{got} of the {_fmt(e.demand)} it asked for; {fair}{tail}."


def boost_sentence(name: str, scenario: Scenario) -> str | None:
    """ "weight x1.30: received 62% of its fair share over the last 3 rounds", when policy.history raised
    the node's weight (docs/health.md); None when it did not."""
    for n in scenario.nodes():
        if n.name == name and n.history is not None:
            factor = history_boost(n, scenario.policy)
            if factor == 1.0:
                return None
            past = n.history
            share = (
                "" if past.share_of_fair is None else f": received {100 * past.share_of_fair:.0f}% of its fair share"
            )
            over = {0: "", 1: " in the last round"}.get(past.rounds, f" over the last {past.rounds} rounds")
            return f"weight x{factor:.2f}{share}{over}"
    return None
