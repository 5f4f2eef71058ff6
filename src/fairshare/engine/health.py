"""Fairness over time: per node and round, the fair share by weights alone against what it received.

Pure (no I/O, no clock): a list of rounds in, oldest first, each a scenario with its published
allocation and, where known, the GPU-hours its nodes used while it was in force.  The CLI builds
the rounds from scenario files, the service from its published rounds; both get the same numbers.

A node's *fair share* in a round is what the same engine gives it on the round's own pools,
requests, speeds and sites by the org tree's weights alone: no guarantees, limits, priorities,
urgency, history boost, minimum sizes, overrides or rulings (`fair_share_scenario`).  Its *why* puts
those rules back one at a time, in a fixed order, and says how far each moved the node (docs/health.md).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from fairshare.engine._allocate import allocate
from fairshare.engine._result import Allocation, ReasonCode
from fairshare.engine.entitlements import boost_sentence
from fairshare.engine.overrides import Pin
from fairshare.errors import UserError
from fairshare.scenario import NodeHistory, OrgNode, Policy, Priority, Request, Scenario, history_boost

STATUSES = ("starved", "short", "idle", "ok", "no_demand")
_NOISE = 1e-3  # effective GPUs: a rule that moved a node less than this did not move it


class DifferentLabs(UserError):
    """The rounds given are not of one lab (their org trees have different roots)."""


@dataclass(frozen=True)
class HealthRules:
    """The thresholds of docs/health.md; the defaults are the documented ones."""

    starved_below: float = 0.8  # share_of_fair under this (while demand exceeds what it got) is starved
    starved_rounds: int = 2  # a streak this long makes the status `starved`, shorter is `short`
    idle_below: float = 0.5  # used under this fraction of what it received is `idle`
    half_life_rounds: float = 3.0  # debt halves every this many rounds

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.starved_below <= 1:
            problems.append(f"starved_below must be in (0, 1], not {self.starved_below:g}")
        if self.starved_rounds < 1:
            problems.append(f"starved_rounds must be at least 1, not {self.starved_rounds}")
        if not 0 <= self.idle_below <= 1:
            problems.append(f"idle_below must be in [0, 1], not {self.idle_below:g}")
        if self.half_life_rounds <= 0:
            problems.append(f"half_life_rounds must be above 0, not {self.half_life_rounds:g}")
        if problems:
            raise UserError("; ".join(problems))

    def starved(self, share: float | None, demand: float, received: float) -> bool:
        """Starved in a round: below `starved_below` of its fair share while it asked for more than it got."""
        return share is not None and share < self.starved_below and demand > received


def share_of_fair(received: float, fair: float, demand: float) -> float | None:
    """received / fair share; None when the node asked for nothing (or was entitled to nothing)."""
    return received / fair if demand > 0 and fair > 1e-9 else None


def streaks(starved: Sequence[bool]) -> tuple[int, int]:
    """(consecutive starved rounds ending with the last, the longest run anywhere), oldest first."""
    current = longest = 0
    for s in starved:
        current = current + 1 if s else 0
        longest = max(longest, current)
    return current, longest


def decayed_debt(owed: Sequence[float], ages: Sequence[float], half_life_rounds: float) -> float:
    """The sum of what each round owed (fair share - received), halved every `half_life_rounds` of its
    age in rounds (0 for the latest)."""
    return sum(o * 0.5 ** (a / half_life_rounds) for o, a in zip(owed, ages, strict=True))


@dataclass(frozen=True)
class RoundInput:
    """One round as health reads it: its world and requests, what was published, what was used."""

    name: str
    scenario: Scenario
    allocation: Allocation  # the published one (after guarantees, limits, overrides, rulings ...)
    pins: Sequence[Pin] = ()  # the overrides and rulings in force, named in `why`
    used: Mapping[str, float] | None = None  # node -> GPU-hours used while the round was in force
    hours: float | None = None  # how long it was in force (to tell idle from busy)
    key: Hashable | None = None  # names this world, allocation and pins: their solved steps can be kept


@dataclass
class Why:
    """One rule that moved a node away from its fair share, by `effective` GPUs (signed)."""

    rule: str  # guarantee | limit | priority | history | below_min | override | rounding
    effective: float
    text: str
    nodes: list[str] = field(default_factory=list)  # the nodes (or requests) whose rule it was


@dataclass
class NodeRound:
    round: str
    demand: int
    fair_share: float  # effective GPUs by weights alone
    fair_share_gpus: float
    received: float  # effective GPUs published
    received_gpus: int
    used: float | None  # GPU-hours while the round was in force, where known
    share_of_fair: float | None  # received / fair_share; None without demand
    starved: bool
    why: list[Why] = field(default_factory=list)


@dataclass
class NodeHealth:
    name: str
    parent: str | None
    depth: int
    status: str  # one of STATUSES, as of the latest round
    starved_streak: int  # consecutive starved rounds ending with the latest
    longest_streak: int
    debt: float  # effective GPUs: sum of (fair_share - received), halved every half_life_rounds
    rounds: list[NodeRound] = field(default_factory=list)

    def latest(self) -> NodeRound | None:
        return self.rounds[-1] if self.rounds else None


@dataclass
class Health:
    rounds: list[str]
    nodes: list[NodeHealth]

    def node(self, name: str) -> NodeHealth:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape (docs/health.md)."""
        return {"rounds": list(self.rounds), "nodes": [asdict(n) for n in self.nodes]}


# --- the fair share by weights alone --------------------------------------------------------------


def _bare_tree(node: OrgNode) -> OrgNode:
    return node.model_copy(
        update={"guarantee": {}, "limit": {}, "history": None, "children": [_bare_tree(c) for c in node.children]}
    )


def _tree_without_limits(node: OrgNode) -> OrgNode:
    return node.model_copy(
        update={"limit": {}, "history": None, "children": [_tree_without_limits(c) for c in node.children]}
    )


def _plain_request(req: Request) -> Request:
    return req.model_copy(update={"priority": Priority.normal, "launch": None, "weight": 1.0, "min": None})


def _plain_policy(policy: Policy) -> Policy:
    """The policy without what raises one request or node over another (priorities, urgency, history);
    how the engine places GPUs stays as the round had it."""
    return policy.model_copy(update={"date": None, "priority_weights": Policy().priority_weights, "history": None})


def fair_share_scenario(scenario: Scenario) -> Scenario:
    """The scenario by the org tree's weights alone: the same pools, requests, speeds and sites, without
    guarantees, limits, priorities, urgency, request weights, history boosts or minimum sizes."""
    return scenario.model_copy(
        update={
            "org": _bare_tree(scenario.org),
            "requests": [_plain_request(r) for r in scenario.requests],
            "policy": _plain_policy(scenario.policy),
        }
    )


def _steps(scenario: Scenario) -> list[tuple[str, Scenario]]:
    """The rules put back one at a time, each step with the rule it adds (see docs/health.md)."""
    plain = [_plain_request(r) for r in scenario.requests]
    bare = fair_share_scenario(scenario)
    with_guarantees = bare.model_copy(update={"org": _tree_without_limits(scenario.org)})
    with_limits = scenario.model_copy(update={"requests": plain, "policy": _plain_policy(scenario.policy)})
    unmin = [r.model_copy(update={"min": None}) for r in scenario.requests]
    no_history = scenario.policy.model_copy(update={"history": None})
    with_priorities = scenario.model_copy(update={"requests": unmin, "policy": no_history})
    with_history = scenario.model_copy(update={"requests": unmin})
    return [
        ("fair", bare),
        ("guarantee", with_guarantees),
        ("limit", with_limits),
        ("priority", with_priorities),
        ("history", with_history),
        ("below_min", scenario),
    ]


def _effective(alloc: Allocation) -> dict[str, float]:
    return {n.name: n.effective for n in alloc.nodes}


# --- the rounds -----------------------------------------------------------------------------------


def _ancestry(scenario: Scenario) -> tuple[dict[str, str | None], dict[str, int]]:
    parent: dict[str, str | None] = {scenario.org.name: None}
    depth: dict[str, int] = {scenario.org.name: 0}
    for node in scenario.nodes():
        for c in node.children:
            parent[c.name] = node.name
            depth[c.name] = depth[node.name] + 1
    return parent, depth


def _subtree(name: str, parent: Mapping[str, str | None]) -> set[str]:
    out = set()
    for n in parent:
        cur: str | None = n
        while cur is not None:
            if cur == name:
                out.add(n)
                break
            cur = parent[cur]
    return out


def _line_of(name: str, parent: Mapping[str, str | None]) -> list[str]:
    """The node and its ancestors."""
    out = []
    cur: str | None = name
    while cur is not None:
        out.append(cur)
        cur = parent[cur]
    return out


@dataclass(frozen=True)
class Solved:
    """One round's steps solved (the costly part of health: up to six solves of the lab): effective GPUs
    per node after each rule was put back, and the fair share in GPUs.  Depends only on the round's
    world, published allocation and pins, so a caller may keep it by `RoundInput.key`."""

    fair_gpus: dict[str, float]
    after: list[tuple[str, dict[str, float]]]  # (rule added, effective per node); the first is the fair share


def _solve_steps(rnd: RoundInput) -> Solved:
    fair: Allocation | None = None
    after: list[tuple[str, dict[str, float]]] = []
    previous: Scenario | None = None
    for rule, scenario in _steps(rnd.scenario):
        if previous is not None and scenario == previous:  # the round has no such rule: nothing moved
            after.append((rule, after[-1][1]))
            continue
        alloc = allocate(scenario, fractional=True, check_reasons=False)
        if fair is None:
            fair = alloc
        after.append((rule, _effective(alloc)))
        previous = scenario
    assert fair is not None
    final = "override" if rnd.pins else "rounding"
    after.append((final, _effective(rnd.allocation)))
    return Solved({n.name: sum(n.gpus.values()) for n in fair.nodes}, after)


def round_key(scenario: Scenario, allocation: Allocation, pins: Sequence[Pin] = ()) -> str:
    """A digest of everything a round's solved steps depend on (its world and requests, the published
    GPUs, the pins): equal keys, equal `Solved`, whatever database or round id they came from."""
    digest = hashlib.blake2b(scenario.model_dump_json().encode(), digest_size=16)
    for r in allocation.requests:
        digest.update(f"{r.id}:{sorted(r.gpus.items())}:{r.effective!r};".encode())
    for n in allocation.nodes:
        digest.update(f"{n.name}:{sorted(n.gpus.items())}:{n.effective!r};".encode())
    for p in pins:
        digest.update(f"{p.request}:{sorted(p.gpus.items())}:{p.reason};".encode())
    return digest.hexdigest()


class KeptSolves(MutableMapping[Hashable, Solved]):
    """The last `size` rounds' solved steps, by key, least recently used dropped first; thread-safe."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Solved] = OrderedDict()
        self._lock = threading.Lock()

    def __getitem__(self, key: Hashable) -> Solved:
        with self._lock:
            self._items.move_to_end(key)
            return self._items[key]

    def __setitem__(self, key: Hashable, value: Solved) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __delitem__(self, key: Hashable) -> None:
        with self._lock:
            del self._items[key]

    def __iter__(self) -> Iterator[Hashable]:
        with self._lock:
            return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)


def solved_steps(rnd: RoundInput, kept: MutableMapping[Hashable, Solved] | None = None) -> Solved:
    """The round's steps, from `kept` when its key is there (and kept there once solved)."""
    if kept is None or rnd.key is None:
        return _solve_steps(rnd)
    found = kept.get(rnd.key)
    if found is None:
        found = kept[rnd.key] = _solve_steps(rnd)
    return found


def _why(node: str, rnd: RoundInput, solved: Solved, parent: Mapping[str, str | None]) -> list[Why]:
    out: list[Why] = []
    line = set(_line_of(node, parent))
    inside = _subtree(node, parent)
    for (_, before), (rule, now) in zip(solved.after, solved.after[1:], strict=False):
        delta = now.get(node, 0.0) - before.get(node, 0.0)
        if abs(delta) < _NOISE:
            continue
        out.append(_explain(rule, round(delta, 6), node, rnd, line, inside, before, now))
    out.sort(key=lambda w: -abs(w.effective))
    return out


def _explain(
    rule: str,
    delta: float,
    node: str,
    rnd: RoundInput,
    line: set[str],
    inside: set[str],
    before: Mapping[str, float],
    now: Mapping[str, float],
) -> Why:
    amount = f"{abs(delta):,.1f} effective GPUs"
    verb = "lost" if delta < 0 else "gained"
    s = rnd.scenario
    if rule == "guarantee":
        own = [n.name for n in s.nodes() if n.guarantee and (n.name in line or n.name in inside)]
        others = [n.name for n in s.nodes() if n.guarantee and n.name not in own]
        if delta > 0 and own:
            return Why(
                rule,
                delta,
                f"{verb} {amount}: the guarantee of {', '.join(own)} (its own, an ancestor's or in its branch)",
                own,
            )
        return Why(rule, delta, f"{verb} {amount}: the guarantee of {', '.join(others) or 'other nodes'}", others)
    if rule == "limit":
        own = [n.name for n in s.nodes() if n.limit and (n.name in line or n.name in inside)]
        if delta < 0 and own:
            return Why(rule, delta, f"{verb} {amount}: capped by the limit of {', '.join(own)}", own)
        others = [n.name for n in s.nodes() if n.limit and n.name not in own]
        return Why(rule, delta, f"{verb} {amount}: the limits of {', '.join(others) or 'other nodes'}", others)
    if rule == "priority":
        mine = [r.id for r in s.requests if r.team in inside and _boosted(r, s)]
        if delta > 0 and mine:
            return Why(rule, delta, f"{verb} {amount}: priority or urgency of its requests {', '.join(mine[:5])}", mine)
        theirs = [r.id for r in s.requests if r.team not in inside and _boosted(r, s)]
        return Why(
            rule, delta, f"{verb} {amount}: priorities and urgency of {', '.join(theirs[:5]) or 'others'}", theirs
        )
    if rule == "history":
        boost = boost_sentence(node, s)
        if boost and delta > 0:
            return Why(rule, delta, f"{verb} {amount}: {boost}", [node])
        boosted = [n.name for n in s.nodes() if history_boost(n, s.policy) != 1.0]
        return Why(rule, delta, f"{verb} {amount}: the history boosts of {', '.join(boosted) or 'others'}", boosted)
    if rule == "below_min":
        dropped = [r.id for r in rnd.allocation.requests if r.reason.code == ReasonCode.below_min]
        mine = [d for d in dropped if s.requests and _team_of(s, d) in inside]
        if mine:
            return Why(
                rule, delta, f"{verb} {amount}: its requests {', '.join(mine[:5])} not funded below their minimum", mine
            )
        listed = ", ".join(dropped[:5]) + (f" and {len(dropped) - 5} more" if len(dropped) > 5 else "")
        text = f"others' requests not funded below their minimum ({listed})" if dropped else "minimum sizes"
        return Why(rule, delta, f"{verb} {amount}: {text}", dropped[:5])
    if rule == "override":
        named = [p.request for p in rnd.pins]
        own_pins = [p for p in rnd.pins if _team_of(s, p.request) in inside]
        pins = own_pins or list(rnd.pins)
        text = "; ".join(f"{p.request} ({p.reason})" if p.reason else p.request for p in pins[:5])
        whose = "on its requests" if own_pins else "on others' requests"
        return Why(rule, delta, f"{verb} {amount}: overrides or rulings {whose}: {text}", named)
    return Why(rule, delta, f"{verb} {amount}: rounding to whole GPUs", [])


def with_history(scenario: Scenario, past: Health, rules: HealthRules | None = None) -> Scenario:
    """`scenario` with each node's history from the rounds before it (the input of policy.history's
    boost): its debt, its latest fair share, and what it received of its fair share over the last
    half-life's rounds.  Nodes unknown to `past`, or with no fair share yet, get none."""
    rules = rules or HealthRules()
    recent = max(1, round(rules.half_life_rounds))
    by_name = {n.name: n for n in past.nodes}

    def put(node: OrgNode) -> OrgNode:
        kids = [put(c) for c in node.children]
        h = by_name.get(node.name)
        counted = [r for r in (h.rounds[-recent:] if h else []) if r.fair_share > 1e-9]
        history = None
        if h is not None and counted:
            fair = sum(r.fair_share for r in counted)
            history = NodeHistory(
                debt=h.debt,
                fair_share=counted[-1].fair_share,
                share_of_fair=round(sum(r.received for r in counted) / fair, 6),
                rounds=len(counted),
            )
        return node.model_copy(update={"children": kids, "history": history})

    return scenario.model_copy(update={"org": put(scenario.org)})


def _boosted(req: Request, s: Scenario) -> bool:
    return (
        req.priority != Priority.normal or req.weight != 1.0 or (req.launch is not None and s.policy.date is not None)
    )


def _team_of(s: Scenario, request_id: str) -> str | None:
    for r in s.requests:
        if r.id == request_id:
            return r.team
    return None


def check_one_lab(names: Sequence[str], scenarios: Sequence[Scenario]) -> None:
    """Pools and org may change between rounds; the lab may not (same root of the org tree)."""
    if not scenarios:
        return
    root = scenarios[0].org.name
    for name, s in zip(names, scenarios, strict=True):
        if s.org.name != root:
            raise DifferentLabs(
                f"{name}: its org tree's root is {s.org.name!r}, the first round's is {root!r}; "
                "health compares rounds of one lab"
            )


def health(
    rounds: Sequence[RoundInput],
    rules: HealthRules | None = None,
    kept: MutableMapping[Hashable, Solved] | None = None,
) -> Health:
    """Every node's fair share, received and used per round, its status, streak, debt and why.
    `kept`: rounds already solved, by their `key` (the service keeps them between requests)."""
    rules = rules or HealthRules()
    if not rounds:
        raise UserError("no rounds to assess; give at least one published round or scenario file")
    check_one_lab([r.name for r in rounds], [r.scenario for r in rounds])
    per_node: dict[str, list[NodeRound]] = {}
    where: dict[str, tuple[str | None, int]] = {}
    for rnd in rounds:
        parent, depth = _ancestry(rnd.scenario)
        solved = solved_steps(rnd, kept)
        fair_eff = solved.after[0][1]
        fair_gpus = solved.fair_gpus
        for res in rnd.allocation.nodes:
            fair = fair_eff.get(res.name, 0.0)
            received_gpus = int(round(sum(res.gpus.values())))
            share = share_of_fair(res.effective, fair, res.demand)
            starved = rules.starved(share, res.demand, received_gpus)
            used = None if rnd.used is None else float(rnd.used.get(res.name, 0.0))
            per_node.setdefault(res.name, []).append(
                NodeRound(
                    round=rnd.name,
                    demand=res.demand,
                    fair_share=round(fair, 6),
                    fair_share_gpus=round(fair_gpus.get(res.name, 0.0), 6),
                    received=round(res.effective, 6),
                    received_gpus=received_gpus,
                    used=None if used is None else round(used, 6),
                    share_of_fair=None if share is None else round(share, 6),
                    starved=starved,
                    why=_why(res.name, rnd, solved, parent) if starved or _moved(res.effective, fair) else [],
                )
            )
            where[res.name] = (parent[res.name], depth[res.name])
    latest = rounds[-1]
    order = [n.name for n in latest.scenario.nodes()] + [n for n in per_node if n not in _names(latest.scenario)]
    index = {r.name: i for i, r in enumerate(rounds)}
    out = []
    for name in order:
        history = per_node[name]
        out.append(_assess(name, where[name], history, rules, index, len(rounds), latest))
    return Health([r.name for r in rounds], out)


def _names(s: Scenario) -> set[str]:
    return {n.name for n in s.nodes()}


def _moved(received: float, fair: float) -> bool:
    return abs(received - fair) >= _NOISE


def _assess(
    name: str,
    where: tuple[str | None, int],
    history: list[NodeRound],
    rules: HealthRules,
    index: Mapping[str, int],
    n_rounds: int,
    latest: RoundInput,
) -> NodeHealth:
    last = history[-1]
    present = index[last.round] == n_rounds - 1
    streak, longest = streaks([nr.starved for nr in history])
    if not present:
        streak = 0
    ages = [n_rounds - 1 - index[nr.round] for nr in history]
    debt = decayed_debt([nr.fair_share - nr.received for nr in history], ages, rules.half_life_rounds)
    if not present or last.demand == 0:
        status = "no_demand"
    elif streak >= rules.starved_rounds:
        status = "starved"
    elif streak > 0:
        status = "short"
    elif (
        last.used is not None
        and latest.hours is not None
        and last.received_gpus > 0
        and last.used < rules.idle_below * last.received_gpus * latest.hours
    ):
        status = "idle"
    else:
        status = "ok"
    return NodeHealth(name, where[0], where[1], status, streak, longest, round(debt, 6), history)


def rounds_from(items: Iterable[tuple[str, Scenario]]) -> list[RoundInput]:
    """Rounds from scenario files (or any scenarios): each allocated as published, nothing used known."""
    return [RoundInput(name, s, allocate(s)) for name, s in items]
