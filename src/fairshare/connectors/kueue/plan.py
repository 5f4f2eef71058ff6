"""Which Kueue objects (kueue.x-k8s.io/v1beta2) a published allocation needs, with what numbers: pure.

How fairshare's concepts map (docs/enforcement.md explains why):

| fairshare                       | Kueue                                                          |
| ------------------------------- | -------------------------------------------------------------- |
| GPU type (A100, H100, ...)      | ResourceFlavor with the nodes' labels (`nvidia.com/gpu.product`) |
| inner org node                  | Cohort; its parent node -> `spec.parentName`                   |
| team (leaf node)                | ClusterQueue in its parent's Cohort (`spec.cohortName`)        |
| own requests of an inner node   | ClusterQueue `<node>-own` in that node's Cohort                |
| allocation per team and type    | `nominalQuota` of the team's ClusterQueue for that flavor      |
| weight                          | `fairSharing.weight` of the node's Cohort or ClusterQueue      |
| (--quotas guarantee)            | `nominalQuota` = guarantees: Kueue computes the surplus split  |
| limit (cap of a subtree)        | `borrowingLimit` = limit - allocation                          |
| guarantee (floor of a subtree)  | `lendingLimit` = allocation - guarantee: capacity not lent     |
| capacity nobody was allocated   | `nominalQuota` of the root Cohort, for anyone to borrow        |
| team -> namespaces              | LocalQueue per namespace; ClusterQueue `namespaceSelector`     |

`plan()` decides every object and number (and raises MappingError for options that do not fit
the scenario); kueue.manifests renders the plan as plain dicts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fairshare.connectors.kueue.formats import DNS_LABEL, qualified_name_problem
from fairshare.errors import UserError

if TYPE_CHECKING:  # not at run time: `fairshare sync kueue`'s options read this package at CLI start-up
    from fairshare.connectors.source import Published
    from fairshare.scenario import OrgNode

GROUP = "kueue.x-k8s.io"
VERSION = "v1beta2"
API_VERSION = f"{GROUP}/{VERSION}"
DEFAULT_RESOURCE = "nvidia.com/gpu"
DEFAULT_LABEL_KEY = "nvidia.com/gpu.product"
FIELD_MANAGER = "fairshare"
MANAGED_BY = {"app.kubernetes.io/managed-by": "fairshare"}
KINDS = ("ResourceFlavor", "Cohort", "ClusterQueue", "LocalQueue")  # apply order: referents first
PLURALS = {
    "ResourceFlavor": "resourceflavors",
    "Cohort": "cohorts",
    "ClusterQueue": "clusterqueues",
    "LocalQueue": "localqueues",
}
NAMESPACED = {"LocalQueue"}
OWN_SUFFIX = "-own"


class MappingError(UserError, ValueError):
    """The options do not fit the scenario (an unknown team or GPU type, a name Kubernetes refuses)."""


@dataclass(frozen=True)
class KueueOptions:
    """How the scenario's names meet the cluster's."""

    resource: str = DEFAULT_RESOURCE  # the extended resource pods request GPUs as
    label_key: str = DEFAULT_LABEL_KEY  # node label telling the GPU type; its value = the type's name
    flavor_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # GPU type -> node labels
    namespaces: Mapping[str, Sequence[str]] = field(default_factory=dict)  # team -> namespaces
    reclaim_within_cohort: str = "Any"  # a team may preempt borrowers to get its nominal quota back
    quotas: str = "allocation"  # nominalQuota = the published allocation, or the guarantees (QUOTAS)


QUOTAS = ("allocation", "guarantee")  # docs/enforcement.md, "Kueue: what it does with the numbers"


# --- names ------------------------------------------------------------------------------------------


def k8s_name(name: str) -> str:
    """An org node's or GPU type's name as a Kubernetes name (a DNS label: a-z, 0-9, '-')."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


def _checked(name: str, what: str) -> str:
    kname = k8s_name(name)
    if not kname or len(kname) > 63 or not DNS_LABEL.match(kname):
        raise MappingError(
            f"{what} {name!r} gives no valid Kubernetes name ({kname!r}): names must be 1-63 "
            "characters of a-z, 0-9 and '-'; rename it in the scenario"
        )
    return kname


def quantity(n: int | float) -> str:
    """A quota or weight as a string Kueue accepts: "977", "1.5", "0.25" (never a YAML float)."""
    if float(n).is_integer():
        return str(int(n))
    text = f"{float(n):.9f}".rstrip("0").rstrip(".")
    if text in ("0", "-0"):
        raise MappingError(f"{n!r} is too small for a Kubernetes quantity (below 1e-9)")
    return text


# --- the plan: which objects, with what numbers -------------------------------------------------------


@dataclass
class Queue:
    """One ClusterQueue: a team, or an inner node's own requests."""

    node: str  # org node name, as in the scenario
    name: str  # Kubernetes name
    cohort: str | None  # Kubernetes name of its Cohort
    weight: float
    quota: dict[str, int]  # GPU type -> nominal quota
    guarantee: dict[str, int]
    limit: dict[str, int]
    namespaces: list[str]


@dataclass
class Group:
    """One Cohort: an inner org node."""

    node: str
    name: str
    parent: str | None
    weight: float
    subtree: dict[str, int]  # GPU type -> GPUs allocated to the whole subtree
    guarantee: dict[str, int]
    limit: dict[str, int]
    pool: dict[str, int]  # GPU type -> shared nominal quota (root: capacity nobody was allocated)


@dataclass
class Plan:
    types: list[str]
    flavors: dict[str, str]  # GPU type -> ResourceFlavor name
    groups: list[Group]
    queues: list[Queue]
    notes: list[str]  # what could not be expressed in Kueue, for the user
    # objects of archived (retired) nodes to delete: (kind, name, namespace or None), deepest first
    deletions: list[tuple[str, str, str | None]] = field(default_factory=list)


def plan(published: Published, options: KueueOptions = KueueOptions()) -> Plan:
    """Decide every object and number; raises MappingError for options that do not fit."""
    s = published.scenario
    types = s.gpu_types
    gpus = published.node_gpus
    capacity = {t: sum(p.gpus for p in s.pools if p.gpu == t) for t in types}
    flavors = {t: _checked(t, "GPU type") for t in types}
    _unique(flavors, "GPU types")
    unknown = sorted(set(options.flavor_labels) - set(types))
    if unknown:
        raise MappingError(
            f"node labels for unknown GPU type(s) {', '.join(unknown)}; the scenario has {', '.join(types)}"
        )
    for problem in (qualified_name_problem(options.resource), qualified_name_problem(options.label_key)):
        if problem:
            raise MappingError(f"invalid resource or label name: {problem}")

    by_guarantee = options.quotas == "guarantee"
    if options.quotas not in QUOTAS:
        raise MappingError(f"quotas {options.quotas!r}: expected one of {', '.join(QUOTAS)}")
    if by_guarantee:
        from fairshare.scenario import guarantee_bases  # here: this package is read at CLI start-up

        guaranteed = guarantee_bases(s.org, types)
        if s.policy.sharing.value != "surplus":
            raise MappingError(
                "quotas from guarantees make Kueue share by its own rule (guarantees first, the rest by weight), "
                "which is policy.sharing surplus; this scenario uses sharing "
                f"{s.policy.sharing.value!r}: set policy.sharing: surplus, or keep quotas from the allocation"
            )

    def alloc(name: str) -> dict[str, int]:
        if by_guarantee:
            return guaranteed[name]
        return {t: int(gpus.get(name, {}).get(t, 0)) for t in types}

    own_requests = {r.team for r in s.requests}
    groups: list[Group] = []
    queues: list[Queue] = []
    notes: list[str] = []
    kname: dict[str, str] = {}
    retired = set(published.retired)
    deletions: list[tuple[str, str, str | None]] = []

    def retire(node: OrgNode) -> None:
        """An archived node's objects go (only those carrying fairshare's managed-by label are deleted)."""
        for child in node.children:
            retire(child)
        name = _checked(node.name, "org node")
        if node.children:
            deletions.append(("Cohort", name, None))
            if node.name in own_requests:
                deletions.append(("ClusterQueue", name + OWN_SUFFIX, None))
            return
        for ns in options.namespaces.get(node.name) or [k8s_name(node.name)]:
            deletions.append(("LocalQueue", name, ns))
        deletions.append(("ClusterQueue", name, None))

    def held(node: OrgNode) -> dict[str, int]:
        """The part of the quota never lent (lendingLimit): with quotas from the allocation, the guarantee;
        with quotas from the guarantees, none (the quota is the guarantee, lent while unused and reclaimed)."""
        return {} if by_guarantee else dict(node.guarantee)

    def visit(node: OrgNode, parent: str | None) -> None:
        if node.name in retired and parent is not None:
            retire(node)
            return
        kname[node.name] = _checked(node.name, "org node")
        here = alloc(node.name)
        if not node.children:
            if parent is None:  # a lab of one team: no cohort, the whole cluster is its quota
                here = {t: max(here[t], capacity[t]) for t in types}
            queues.append(
                Queue(node.name, kname[node.name], parent, node.weight, here, held(node), dict(node.limit), [])
            )
        else:
            if parent is None:
                pool = {t: max(capacity[t] - here[t], 0) for t in types}
            elif by_guarantee:  # the cohort's own quota: its guarantee above its children's
                pool = {t: max(here[t] - sum(alloc(c.name)[t] for c in node.children), 0) for t in types}
            else:
                pool = {t: 0 for t in types}
            if parent is None and by_guarantee:  # nothing above the root: all capacity beyond the guarantees
                pool = {t: max(capacity[t] - sum(alloc(c.name)[t] for c in node.children), 0) for t in types}
            groups.append(
                Group(node.name, kname[node.name], parent, node.weight, here, held(node), dict(node.limit), pool)
            )
            if node.name in own_requests and by_guarantee:
                queues.append(
                    Queue(
                        node.name,
                        kname[node.name] + OWN_SUFFIX,
                        kname[node.name],
                        1.0,
                        dict.fromkeys(types, 0),
                        {},
                        {},
                        [],
                    )
                )
            elif node.name in own_requests:
                children = [alloc(c.name) for c in node.children]
                own = {t: max(here[t] - sum(c[t] for c in children), 0) for t in types}
                queues.append(Queue(node.name, kname[node.name] + OWN_SUFFIX, kname[node.name], 1.0, own, {}, {}, []))
            for child in node.children:
                visit(child, kname[node.name])
        if parent is None and (node.guarantee or node.limit):
            notes.append(
                f"{node.name}: the root's guarantee and limit have no Kueue counterpart (there is "
                "nothing above the root to borrow from or lend to); they are left out"
            )

    visit(s.org, None)
    for gone in published.retired_elsewhere:  # archived before this round: its queues may still be there
        retire(gone)
    # Cohorts and ClusterQueues share one set of names: each name in Kueue's messages means one node
    _unique(
        {
            **{f"{g.node} (Cohort)": g.name for g in groups},
            **{q.node if q.name == kname[q.node] else f"{q.node} (own requests)": q.name for q in queues},
        },
        "Cohort and ClusterQueue names",
    )

    teams = sorted(q.node for q in queues)
    unknown = sorted(set(options.namespaces) - set(teams))
    if unknown:
        raise MappingError(
            f"namespace mapping for {', '.join(map(repr, unknown))}, which is not a team with a "
            f"queue; teams are {', '.join(teams)}"
        )
    for q in queues:
        wanted = options.namespaces.get(q.node) or [k8s_name(q.node)]
        for ns in wanted:
            if not ns or len(ns) > 63 or not DNS_LABEL.match(ns):
                raise MappingError(
                    f"namespace {ns!r} for team {q.node!r} is not a valid namespace name "
                    "(1-63 characters of a-z, 0-9 and '-')"
                )
        q.namespaces = list(dict.fromkeys(wanted))
    for kind, name, namespace in deletions:
        notes.append(
            f"archived: delete {kind} {namespace + '/' if namespace else ''}{name} (only if it carries "
            f"{next(iter(MANAGED_BY))}={next(iter(MANAGED_BY.values()))})"
        )
    return Plan(types, flavors, groups, queues, notes, deletions)


def _unique(names: Mapping[str, str], what: str) -> None:
    seen: dict[str, str] = {}
    for source, name in names.items():
        if name in seen:
            raise MappingError(
                f"{what}: {seen[name]!r} and {source!r} both become {name!r} in Kubernetes; rename one in the scenario"
            )
        seen[name] = source
