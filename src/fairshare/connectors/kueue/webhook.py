"""What Kueue's validating admission webhook checks beyond the CRD schema (pkg/webhooks, v1beta2).

The webhook is Go code, not part of the CRDs, so these checks are written out here: non-negative
quotas, `lendingLimit` at most `nominalQuota`, limits only with a cohort or parent, fair-sharing
weights, resource names, namespace selectors.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fairshare.connectors.kueue.formats import parse_quantity, qualified_name_problem
from fairshare.connectors.kueue.problems import Loc

Found = tuple[Loc, str, str]  # (path, message, rule)


def webhook_problems(kind: str, obj: dict[str, Any]) -> list[Found]:
    """What Kueue's validating webhook checks beyond the schema (pkg/webhooks, v1beta2)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    out: list[Found] = []
    fs = spec.get("fairSharing")
    if isinstance(fs, dict) and "weight" in fs:
        w = parse_quantity(fs["weight"])
        if w is not None and w < 0:
            out.append((("spec", "fairSharing", "weight"), "must be non-negative", "webhook: fairSharing"))
        elif w is not None and 0 < w <= Decimal("1e-9"):
            out.append(
                (
                    ("spec", "fairSharing", "weight"),
                    "when not 0, weight must be greater than 1e-9",
                    "webhook: fairSharing",
                )
            )
    if kind not in ("ClusterQueue", "Cohort"):
        return out
    parent_field = "cohortName" if kind == "ClusterQueue" else "parentName"
    has_parent = bool(spec.get(parent_field))
    seen_resources: set[str] = set()
    seen_flavors: set[Any] = set()
    groups = _list(spec.get("resourceGroups"))
    for i, rg in enumerate(groups):
        if not isinstance(rg, dict):
            continue
        here: Loc = ("spec", "resourceGroups", i)
        covered = _list(rg.get("coveredResources"))
        for j, name in enumerate(covered):
            why = qualified_name_problem(str(name))
            if why:
                out.append(
                    (here + ("coveredResources", j), f"invalid resource name {name!r}: {why}", "webhook: resource name")
                )
            if name in seen_resources:
                out.append(
                    (
                        here + ("coveredResources", j),
                        f"resource {name!r} is already covered by an earlier "
                        "resource group; each resource may be in one group only",
                        "webhook: resourceGroups",
                    )
                )
            seen_resources.add(name)
        flavors = _list(rg.get("flavors"))
        for j, fq in enumerate(flavors):
            if not isinstance(fq, dict):
                continue
            if fq.get("name") in seen_flavors:
                out.append(
                    (
                        here + ("flavors", j, "name"),
                        f"flavor {fq.get('name')!r} already appears in this or "
                        "an earlier resource group; each flavor may be in one group only",
                        "webhook: resourceGroups",
                    )
                )
            seen_flavors.add(fq.get("name"))
            resources = _list(fq.get("resources"))
            for k, rq in enumerate(resources[: len(covered)]):
                if not isinstance(rq, dict):
                    continue
                at = here + ("flavors", j, "resources", k)
                if rq.get("name") != covered[k]:
                    out.append(
                        (
                            at + ("name",),
                            f"{rq.get('name')!r} must match coveredResources[{k}] "
                            f"({covered[k]!r}): list a flavor's resources in the order of coveredResources",
                            "webhook: resourceGroups",
                        )
                    )
                for q in ("nominalQuota", "borrowingLimit", "lendingLimit"):
                    v = parse_quantity(rq.get(q)) if q in rq else None
                    if v is not None and v < 0:
                        out.append((at + (q,), f"{rq[q]!r} must be non-negative", "webhook: quota"))
                limits = ("lendingLimit",) if kind == "ClusterQueue" else ("borrowingLimit", "lendingLimit")
                for q in limits:  # a ClusterQueue's borrowingLimit is the CEL rule's
                    if q in rq and not has_parent:
                        out.append(
                            (
                                at + (q,),
                                f"must be nil when {parent_field} is empty: a {kind} without "
                                f"{'a cohort' if kind == 'ClusterQueue' else 'a parent'} neither borrows nor lends",
                                "webhook: limits",
                            )
                        )
                if kind == "ClusterQueue" and "lendingLimit" in rq:
                    lend, nominal = parse_quantity(rq["lendingLimit"]), parse_quantity(rq.get("nominalQuota"))
                    if lend is not None and nominal is not None and lend > nominal:
                        out.append(
                            (
                                at + ("lendingLimit",),
                                f"{rq['lendingLimit']!r} must be less than or equal to "
                                f"the nominalQuota ({rq.get('nominalQuota')!r})",
                                "webhook: lendingLimit",
                            )
                        )
    selector = spec.get("namespaceSelector") if kind == "ClusterQueue" else None
    if isinstance(selector, dict):
        for j, req in enumerate(selector.get("matchExpressions") or []):
            if not isinstance(req, dict):
                continue
            at = ("spec", "namespaceSelector", "matchExpressions", j)
            op, values = req.get("operator"), req.get("values") or []
            if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
                out.append(
                    (
                        at + ("operator",),
                        f"{op!r} is not one of In, NotIn, Exists, DoesNotExist",
                        "webhook: namespaceSelector",
                    )
                )
            elif op in ("In", "NotIn") and not values:
                out.append((at + ("values",), f"must be non-empty when operator is {op}", "webhook: namespaceSelector"))
            elif op in ("Exists", "DoesNotExist") and values:
                out.append((at + ("values",), f"must be empty when operator is {op}", "webhook: namespaceSelector"))
    return out


def _list(value: Any) -> list[Any]:
    """A list field of a manifest that may hold anything: the schema check reports the wrong types."""
    return value if isinstance(value, list) else []
