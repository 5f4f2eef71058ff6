"""A Kueue plan as the objects themselves (plain dicts, in apply order), as YAML, and as files.

Pure but for `write`; the objects are validated by kueue.schema before anything is written or applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairshare.connectors.kueue.formats import label_value_problem, qualified_name_problem
from fairshare.connectors.kueue.plan import (
    API_VERSION,
    KINDS,
    MANAGED_BY,
    PLURALS,
    Group,
    KueueOptions,
    MappingError,
    Plan,
    Queue,
    plan,
    quantity,
)

if TYPE_CHECKING:
    from fairshare.connectors.source import Published


def manifests(published: Published, options: KueueOptions = KueueOptions()) -> list[dict[str, Any]]:
    """ResourceFlavors, Cohorts (root first), ClusterQueues, LocalQueues: in apply order."""
    return render(plan(published, options), published.label, options)


def render(p: Plan, label: str, options: KueueOptions = KueueOptions()) -> list[dict[str, Any]]:
    """The objects of a plan; `label` (where the allocation came from) goes into an annotation."""
    source = {"fairshare/source": label}
    objects = [_flavor(p.flavors[t], t, options, source) for t in p.types]
    objects += [_cohort(g, p, options, source) for g in p.groups]
    objects += [_cluster_queue(q, p, options, source) for q in p.queues]
    objects += [_local_queue(q, ns, source) for q in p.queues for ns in q.namespaces]
    return objects


def _meta(name: str, annotations: dict[str, str], namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = dict(MANAGED_BY)
    meta["annotations"] = annotations
    return meta


def _flavor(name: str, gpu: str, options: KueueOptions, source: dict[str, str]) -> dict[str, Any]:
    labels = dict(options.flavor_labels.get(gpu) or {options.label_key: gpu})
    for key, value in labels.items():
        why = qualified_name_problem(key) or label_value_problem(value)
        if why:
            raise MappingError(f"node label {key}={value} for GPU type {gpu}: {why}")
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceFlavor",
        "metadata": _meta(name, {"fairshare/gpu": gpu, **source}),
        "spec": {"nodeLabels": labels},
    }


def _resource_groups(flavors: list[tuple[str, dict[str, str]]], resource: str) -> list[dict[str, Any]]:
    return [
        {
            "coveredResources": [resource],
            "flavors": [{"name": name, "resources": [{"name": resource, **quotas}]} for name, quotas in flavors],
        }
    ]


def _limits(here: int, gpu: str, guarantee: dict[str, int], limit: dict[str, int]) -> dict[str, str]:
    out = {}
    if gpu in limit:  # may borrow up to the cap
        out["borrowingLimit"] = quantity(max(limit[gpu] - here, 0))
    if gpu in guarantee:  # the guaranteed part is never lent
        out["lendingLimit"] = quantity(max(here - guarantee[gpu], 0))
    return out


def _cohort(g: Group, p: Plan, options: KueueOptions, source: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if g.parent:
        spec["parentName"] = g.parent
    spec["fairSharing"] = {"weight": quantity(g.weight)}
    has_limits = g.parent is not None and bool(g.guarantee or g.limit)
    if has_limits or any(g.pool.values()):
        flavors = []
        for t in p.types:
            quotas = {"nominalQuota": quantity(g.pool[t])}
            if g.parent is not None:
                quotas.update(_limits(g.subtree[t], t, g.guarantee, g.limit))
            flavors.append((p.flavors[t], quotas))
        spec["resourceGroups"] = _resource_groups(flavors, options.resource)
    return {
        "apiVersion": API_VERSION,
        "kind": "Cohort",
        "metadata": _meta(g.name, {"fairshare/node": g.node, **source}),
        "spec": spec,
    }


def _cluster_queue(q: Queue, p: Plan, options: KueueOptions, source: dict[str, str]) -> dict[str, Any]:
    # The team's own types first (most GPUs first): with whenCanBorrow=TryNextFlavor a workload
    # that does not pin a GPU type lands on the team's own quota before it borrows.
    order = sorted(p.types, key=lambda t: (-q.quota[t], p.types.index(t)))
    flavors = []
    for t in order:
        quotas = {"nominalQuota": quantity(q.quota[t])}
        if q.cohort:
            quotas.update(_limits(q.quota[t], t, q.guarantee, q.limit))
        flavors.append((p.flavors[t], quotas))
    spec: dict[str, Any] = {}
    if q.cohort:
        spec["cohortName"] = q.cohort
    spec["namespaceSelector"] = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(q.namespaces)}]
    }
    spec["fairSharing"] = {"weight": quantity(q.weight)}
    spec["flavorFungibility"] = {"whenCanBorrow": "TryNextFlavor"}
    if q.cohort:
        spec["preemption"] = {
            "reclaimWithinCohort": options.reclaim_within_cohort,
            "withinClusterQueue": "LowerPriority",
        }
    spec["resourceGroups"] = _resource_groups(flavors, options.resource)
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterQueue",
        "metadata": _meta(q.name, {"fairshare/node": q.node, **source}),
        "spec": spec,
    }


def _local_queue(q: Queue, namespace: str, source: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "LocalQueue",
        "metadata": _meta(q.name, {"fairshare/node": q.node, **source}, namespace),
        "spec": {"clusterQueue": q.name},
    }


def to_yaml(objects: Iterable[dict[str, Any]]) -> str:
    """Multi-document YAML, keys in the order written (apiVersion, kind, metadata, spec)."""
    import yaml  # here, not at the top: every `fairshare` command imports this package at start-up

    return yaml.safe_dump_all(list(objects), sort_keys=False, default_flow_style=False, explicit_start=True)


def by_kind(objects: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for obj in objects:
        out.setdefault(obj["kind"], []).append(obj)
    return out


def file_names() -> dict[str, str]:
    """One file per kind, numbered so `kubectl apply -f DIR` creates referents first."""
    return {kind: f"{i + 1:02d}-{PLURALS[kind]}.yaml" for i, kind in enumerate(KINDS)}


def write(objects: Sequence[dict[str, Any]], directory: Path) -> list[str]:
    """One YAML file per kind in `directory`; returns 'file (count)' for each file written.
    Raises OSError when the directory cannot be written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, objs in by_kind(objects).items():
        if objs:
            name = file_names()[kind]
            (directory / name).write_text(to_yaml(objs), encoding="utf-8")
            written.append(f"{name} ({len(objs)})")
    return written


def deletions(p: Plan) -> list[dict[str, Any]]:
    """The archived nodes' objects as references (apiVersion, kind, name, namespace, the managed-by label),
    deepest first: what `kubectl delete -f` takes, and what `apply.retire` deletes."""
    refs = []
    for kind, name, namespace in p.deletions:
        meta: dict[str, Any] = {"name": name}
        if namespace:
            meta["namespace"] = namespace
        meta["labels"] = dict(MANAGED_BY)
        refs.append({"apiVersion": API_VERSION, "kind": kind, "metadata": meta})
    return refs


def deletions_file(directory: Path) -> Path:
    """Where `--out DIR` writes the deletions: beside DIR, never in it, so `kubectl apply -f DIR` (or a GitOps
    tool reading DIR) cannot create them again."""
    return directory.parent / f"{directory.name}-delete.yaml"


def write_deletions(refs: Sequence[dict[str, Any]], directory: Path) -> Path | None:
    """The deletions as one YAML file for `kubectl delete -f` (None, and an old file removed, when there are
    none).  Raises OSError when it cannot be written."""
    path = deletions_file(directory)
    if not refs:
        path.unlink(missing_ok=True)
        return None
    header = (
        "# Kueue objects of archived org nodes, for: kubectl delete -f " + path.name + "\n"
        "# Check each still carries app.kubernetes.io/managed-by=fairshare (kubectl get -l ...): "
        "`fairshare sync kueue --apply` deletes only those.\n"
    )
    path.write_text(header + to_yaml(refs), encoding="utf-8")
    return path
