"""The references between the objects of one sync: each one resolves, no duplicates, no cohort cycle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fairshare.connectors.kueue.problems import Loc, Problem, format_path, object_id


def references(objects: Sequence[Any]) -> list[Problem]:
    """Between the objects of one sync: no duplicates, every reference resolves, no cohort cycle."""
    out: list[Problem] = []
    names: dict[str, set[str]] = {}
    seen: dict[tuple[Any, Any, Any], int] = {}
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            continue
        key = (obj.get("kind"), obj["metadata"].get("namespace"), obj["metadata"].get("name"))
        if key in seen:
            out.append(
                Problem(
                    object_id(obj, i),
                    "metadata.name",
                    f"defined twice (objects #{seen[key] + 1} and #{i + 1})",
                    "reference",
                )
            )
        seen[key] = i
        names.setdefault(str(obj.get("kind")), set()).add(str(obj["metadata"].get("name")))
    parents: dict[str, str] = {}
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict) or not isinstance(obj.get("spec"), dict):
            continue
        kind, spec, ident = obj.get("kind"), obj["spec"], object_id(obj, i)

        def need(loc: Loc, target_kind: str, target: Any, ident: str = ident) -> None:
            if target not in names.get(target_kind, set()):
                out.append(
                    Problem(
                        ident,
                        format_path(loc),
                        f"refers to {target_kind} {target!r}, which is not among the generated objects",
                        "reference",
                    )
                )

        if kind in ("ClusterQueue", "Cohort"):
            for g, rg in enumerate(spec.get("resourceGroups") or []):
                for f, fq in enumerate((rg if isinstance(rg, dict) else {}).get("flavors") or []):
                    if isinstance(fq, dict):
                        need(("spec", "resourceGroups", g, "flavors", f, "name"), "ResourceFlavor", fq.get("name"))
        if kind == "ClusterQueue" and spec.get("cohortName"):
            need(("spec", "cohortName"), "Cohort", spec["cohortName"])
        if kind == "Cohort" and spec.get("parentName"):
            need(("spec", "parentName"), "Cohort", spec["parentName"])
            parents[str(obj["metadata"].get("name"))] = spec["parentName"]
        if kind == "LocalQueue" and spec.get("clusterQueue"):
            need(("spec", "clusterQueue"), "ClusterQueue", spec["clusterQueue"])
    for start in sorted(parents):
        chain, node = [start], parents[start]
        while node in parents and node not in chain:
            chain.append(node)
            node = parents[node]
        if node == start:
            out.append(
                Problem(
                    f"Cohort/{start}",
                    "spec.parentName",
                    "the cohort tree has a cycle: "
                    + " -> ".join(chain + [start])
                    + " (Kueue disables every member of a cycle)",
                    "reference",
                )
            )
    return out
