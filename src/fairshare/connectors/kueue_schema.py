"""Check Kueue manifests offline against Kueue's own CRD schemas, before they are written or applied.

An API server with Kueue installed would reject a bad manifest at apply time, half-way through a
sync.  This module rejects it first, with one line per problem, `Kind/name: field.path: what is
wrong [rule]`, in four layers:

1. the CRD's OpenAPI v3 schema (jsonschema, Draft 4 as OpenAPI 3.0 uses), *closed*: a field the
   schema does not list is an error (the API server would silently prune it, or reject it under
   strict field validation), with a "did you mean" for renames such as v1beta1's `cohort`;
2. list semantics jsonschema does not know: `x-kubernetes-list-type: map` (unique keys) and `set`;
3. the CRD's CEL rules (`x-kubernetes-validations`), each re-implemented in Python in `CEL_RULES`
   and evaluated, as the API server does, after the schema's defaults are filled in.  Transition
   rules (those reading `oldSelf`) only constrain updates and are skipped;
4. the checks Kueue's admission webhook adds (non-negative quotas, `lendingLimit` at most
   `nominalQuota`, limits only with a cohort or parent, fair-sharing weights, resource names) and
   object metadata (names, namespaces, labels) that the schema leaves open.

`check_objects` also checks the references between the objects of one sync (flavors, cohorts,
cluster queues exist; the cohort tree has no cycle) and raises `InvalidManifest` listing all.
"""

from __future__ import annotations

from fairshare.errors import UserError

import copy
import difflib
import functools
import os
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import yaml

GROUP = "kueue.x-k8s.io"
BUNDLED_CRDS = Path(__file__).with_name("kueue_crds")
CRDS_ENV = "FAIRSHARE_KUEUE_CRDS"

Loc = tuple[str | int, ...]


# --- results ---------------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one object: where, what, and which rule says so."""

    obj: str  # "ClusterQueue/llama", "LocalQueue/llama/llama" (namespace/name)
    path: str  # "spec.resourceGroups[0].flavors[1].resources[0].nominalQuota"; "" = the object
    message: str
    rule: str  # "schema: pattern", "CEL: <rule>", "webhook: ...", "metadata", "reference"

    def __str__(self) -> str:
        where = f"{self.obj}: {self.path}" if self.path else self.obj
        return f"{where}: {self.message} [{self.rule}]"


class InvalidManifest(UserError, ValueError):
    """Generated objects that Kueue would reject; `problems` lists every reason found."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class CrdError(UserError):
    """The CRD schemas to validate against cannot be found or read."""


# --- Kubernetes value formats ------------------------------------------------------------------------

_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_QUANTITY = re.compile(rf"^({_NUMBER})(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity (8, "500m", "1.5", "2Ki", "1e3") as a Decimal; None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if not isinstance(value, str):
        return None
    m = _QUANTITY.match(value)
    if not m:
        return None
    try:
        number, suffix = Decimal(m.group(1)), m.group(2) or ""
    except InvalidOperation:
        return None
    if suffix in _BINARY:
        return number * (2 ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    if suffix[:1] in ("e", "E"):
        return number.scaleb(int(suffix[1:]))
    return number


def qualified_name_problem(name: str) -> str | None:
    """Why `name` is not a qualified name (`[prefix/]name`, as label keys and resource names are)."""
    prefix, _, local = name.rpartition("/")
    if "/" in name and not prefix:
        return "the prefix before '/' is empty"
    if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        return f"prefix {prefix!r} must be a lowercase DNS subdomain (e.g. example.com)"
    if not local or len(local) > 63 or not _NAME_PART.match(local):
        return (f"name part {local!r} must be 1-63 characters of letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit")
    return None


def label_value_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"label value {value!r} must be a string"
    if value and (len(value) > 63 or not _NAME_PART.match(value)):
        return (f"label value {value!r} must be at most 63 characters of letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit")
    return None


def format_path(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


# --- CEL rules, one Python function each ---------------------------------------------------------------
# Keyed by the rule's text (whitespace normalised).  Each gets CEL's `self` (the value at the rule's
# schema node, defaults filled in) and returns whether the rule holds; a missing key counts as a
# failed rule, as a CEL evaluation error rejects the object too.

_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _no_borrowing_limit_without(cohort_field: str) -> Callable[[Any], bool]:
    def rule(spec: dict[str, Any]) -> bool:
        if cohort_field not in spec and "resourceGroups" in spec:
            return all("borrowingLimit" not in r for rg in spec["resourceGroups"]
                       for f in rg["flavors"] for r in f["resources"])
        return True
    return rule


CEL_RULES: dict[str, Callable[[Any], bool]] = {
    # ClusterQueue spec (v1beta2 spells the cohort `cohortName`, v1beta1 `cohort`)
    "!has(self.cohortName) && has(self.resourceGroups) ? self.resourceGroups.all(rg, rg.flavors.all(f, "
    "f.resources.all(r, !has(r.borrowingLimit)))) : true": _no_borrowing_limit_without("cohortName"),
    "!has(self.cohort) && has(self.resourceGroups) ? self.resourceGroups.all(rg, rg.flavors.all(f, "
    "f.resources.all(r, !has(r.borrowingLimit)))) : true": _no_borrowing_limit_without("cohort"),
    # ClusterQueue spec.flavorFungibility
    "!has(self.preference) || (self.whenCanBorrow == 'TryNextFlavor' && self.whenCanPreempt == 'TryNextFlavor')":
        lambda s: "preference" not in s or (s["whenCanBorrow"] == "TryNextFlavor"
                                            and s["whenCanPreempt"] == "TryNextFlavor"),
    # ClusterQueue spec.preemption
    "!(self.reclaimWithinCohort == 'Never' && has(self.borrowWithinCohort) && "
    "self.borrowWithinCohort.policy != 'Never')":
        lambda s: not (s["reclaimWithinCohort"] == "Never" and "borrowWithinCohort" in s
                       and s["borrowWithinCohort"]["policy"] != "Never"),
    # ClusterQueue and Cohort spec.resourceGroups[]
    "self.flavors.all(x, size(x.resources) == size(self.coveredResources))":
        lambda rg: all(len(f["resources"]) == len(rg["coveredResources"]) for f in rg["flavors"]),
    # ResourceFlavor spec
    "!has(self.topologyName) || self.nodeLabels.size() >= 1":
        lambda s: "topologyName" not in s or len(s["nodeLabels"]) >= 1,
    # ResourceFlavor spec.nodeTaints
    "self.all(x, x.effect in ['NoSchedule', 'PreferNoSchedule', 'NoExecute'])":
        lambda xs: all(x["effect"] in _EFFECTS for x in xs),
    # ResourceFlavor spec.tolerations
    "self.all(x, !has(x.key) ? x.operator == 'Exists' : true)":
        lambda xs: all("key" in x or x["operator"] == "Exists" for x in xs),
    "self.all(x, has(x.tolerationSeconds) ? x.effect == 'NoExecute' : true)":
        lambda xs: all("tolerationSeconds" not in x or x["effect"] == "NoExecute" for x in xs),
    "self.all(x, !has(x.operator) || x.operator in ['Equal', 'Exists'])":
        lambda xs: all("operator" not in x or x["operator"] in ("Equal", "Exists") for x in xs),
    "self.all(x, has(x.operator) && x.operator == 'Exists' ? !has(x.value) : true)":
        lambda xs: all(not (x.get("operator") == "Exists") or "value" not in x for x in xs),
    "self.all(x, !has(x.effect) || x.effect in ['NoSchedule', 'PreferNoSchedule', 'NoExecute'])":
        lambda xs: all("effect" not in x or x["effect"] in _EFFECTS for x in xs),
}
CEL_RULES = {" ".join(k.split()): v for k, v in CEL_RULES.items()}


def is_transition_rule(rule: str) -> bool:
    """Rules reading `oldSelf` compare an update with the stored object: nothing to check offline."""
    return re.search(r"\boldSelf\b", rule) is not None


# --- schema walking -----------------------------------------------------------------------------------

_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf")


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a structural schema that rejects unknown fields: `additionalProperties: false` on
    every object node that lists `properties` (unless it preserves unknown fields)."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if not isinstance(node, dict):
            return
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for sub in (node.get("properties") or {}).values():
            close(sub)
        close(node.get("items"))
        close(node.get("additionalProperties"))
        close(node.get("not"))
        for key in _SUBSCHEMA_LISTS:
            for sub in node.get(key) or []:
                close(sub)

    close(schema)
    return schema


def walk(schema: dict[str, Any], value: Any, loc: Loc = ()) -> Iterator[tuple[dict[str, Any], Any, Loc]]:
    """(schema node, value, path) for the value and everything in it that the schema describes."""
    yield schema, value, loc
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            if key in props:
                yield from walk(props[key], sub, loc + (key,))
            elif isinstance(extra, dict):
                yield from walk(extra, sub, loc + (key,))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, sub in enumerate(value):
            yield from walk(schema["items"], sub, loc + (i,))


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """The value with the schema's defaults filled in where the API server would fill them."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out = dict(value)
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
        for key, sub in out.items():
            if key in props:
                out[key] = with_defaults(props[key], sub)
            elif isinstance(extra, dict):
                out[key] = with_defaults(extra, sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [with_defaults(schema["items"], v) for v in value]
    return value


# --- the CRDs -----------------------------------------------------------------------------------------

@dataclass
class KindSchema:
    kind: str
    version: str
    namespaced: bool
    schema: dict[str, Any]  # as published (for defaults, CEL rules, list types)
    validator: Any  # jsonschema validator over the closed schema


_OBJECT_META = {
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
}
_QUANTITY_HINT = 'e.g. 8, "500m", "1.5" or "2Ki"'


class CrdSchemas:
    """Kueue's CRDs from a directory of `kueue.x-k8s.io_<plural>.yaml` files.

    Default: the copies bundled with fairshare (Kueue v0.19); `directory` or $FAIRSHARE_KUEUE_CRDS
    points at another release's files."""

    def __init__(self, directory: Path | str | None = None):
        self.directory = Path(directory or os.environ.get(CRDS_ENV) or BUNDLED_CRDS)
        self.unchecked_rules: set[str] = set()  # CEL rules met that CEL_RULES does not implement
        self._crds: dict[str, dict[str, Any]] | None = None
        self._kinds: dict[tuple[str, str], KindSchema] = {}

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._crds is not None:
            return self._crds
        if not self.directory.is_dir():
            raise CrdError(f"Kueue CRD schemas not found: {self.directory} is not a directory; point --crds "
                           f"(or ${CRDS_ENV}) at a directory of Kueue's kueue.x-k8s.io_*.yaml CRD files")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        crds: dict[str, dict[str, Any]] = {}
        for path in sorted(self.directory.glob("*.yaml")) + sorted(self.directory.glob("*.yml")):
            try:
                doc = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
            except (OSError, ValueError, yaml.YAMLError) as e:  # ValueError: bad UTF-8, or a date that does not exist
                raise CrdError(f"cannot read the CRD file {path}: {e}") from None
            if (isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
                    and (doc.get("spec") or {}).get("group") == GROUP):
                crds[doc["spec"]["names"]["kind"]] = doc
        if not crds:
            raise CrdError(f"no Kueue CRDs in {self.directory}: expected {GROUP} CustomResourceDefinition files "
                           f"such as kueue.x-k8s.io_clusterqueues.yaml (Kueue's config/components/crd/bases)")
        self._crds = crds
        return crds

    def kinds(self) -> list[str]:
        return sorted(self._load())

    def kind(self, kind: str, version: str) -> KindSchema:
        key = (kind, version)
        if key not in self._kinds:
            crds = self._load()
            if kind not in crds:
                raise CrdError(f"no CRD for {GROUP} kind {kind} in {self.directory} (has: "
                               f"{', '.join(sorted(crds)) or 'none'}); expected a file like "
                               f"kueue.x-k8s.io_{kind.lower()}s.yaml")
            crd = crds[kind]
            versions = {v["name"]: v for v in crd["spec"]["versions"]}
            if version not in versions:
                raise KeyError(version)
            schema = versions[version]["schema"]["openAPIV3Schema"]
            strict = closed(schema)
            import jsonschema  # here, not at the top: the CLI imports this module at every start

            validator = jsonschema.Draft4Validator(strict, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
            self._kinds[key] = KindSchema(kind, version, crd["spec"].get("scope") == "Namespaced", schema, validator)
        return self._kinds[key]

    # -- one object ---------------------------------------------------------------------------------

    def check(self, obj: Any, index: int = 0) -> list[Problem]:
        """Everything wrong with one object, on its own."""
        ident = object_id(obj, index)
        if not isinstance(obj, dict):
            return [Problem(ident, "", f"a manifest must be a mapping, not {type(obj).__name__}", "schema: type")]
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        group, _, version = str(api_version).rpartition("/")
        if group != GROUP:
            return [Problem(ident, "apiVersion", f"{api_version!r} is not a {GROUP} version "
                                                 f"(expected {GROUP}/v1beta2)", "schema: apiVersion")]
        if kind not in self._load():
            return [Problem(ident, "kind", f"unknown {GROUP} kind {kind!r}; known: {', '.join(self.kinds())}",
                            "schema: kind")]
        try:
            ks = self.kind(kind, version)
        except KeyError:
            served = [v["name"] for v in self._load()[kind]["spec"]["versions"]]
            return [Problem(ident, "apiVersion", f"{kind} has no version {version!r}; the CRD serves "
                                                 f"{', '.join(served)}", "schema: apiVersion")]
        problems = self._schema_problems(ks, obj, ident)
        problems += self._list_problems(ks, obj, ident)
        problems += self._cel_problems(ks, obj, ident)
        problems += [Problem(ident, format_path(loc), msg, rule) for loc, msg, rule in _metadata(ks, obj)]
        problems += [Problem(ident, format_path(loc), msg, rule) for loc, msg, rule in _webhook(kind, obj)]
        return sorted(set(problems), key=lambda p: (p.path, p.rule, p.message))

    def _schema_problems(self, ks: KindSchema, obj: dict[str, Any], ident: str) -> list[Problem]:
        out = []
        for e in ks.validator.iter_errors(obj):
            loc = tuple(e.absolute_path)
            if e.validator == "additionalProperties" and isinstance(e.instance, dict):
                known = sorted((e.schema.get("properties") or {}))
                for extra in sorted(set(e.instance) - set(known)):
                    close = difflib.get_close_matches(extra, known, n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    out.append(Problem(ident, format_path(loc + (extra,)),
                                       f"unknown field {extra!r}{hint} ({ks.kind} {ks.version} has here: "
                                       f"{', '.join(known)})", "schema: unknown field"))
                continue
            if e.schema.get("x-kubernetes-int-or-string") and e.validator in ("anyOf", "pattern"):
                msg = f"{e.instance!r} is not a Kubernetes quantity ({_QUANTITY_HINT})"
            else:
                msg = e.message
            out.append(Problem(ident, format_path(loc), msg, f"schema: {e.validator}"))
        return out

    def _list_problems(self, ks: KindSchema, obj: dict[str, Any], ident: str) -> list[Problem]:
        out = []
        for schema, value, loc in walk(ks.schema, obj):
            list_type = schema.get("x-kubernetes-list-type")
            if not isinstance(value, list) or list_type not in ("map", "set"):
                continue
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen: dict[Any, int] = {}
            for i, item in enumerate(value):
                if list_type == "map":
                    if not isinstance(item, dict):
                        continue
                    key: Any = tuple(repr(item.get(k)) for k in keys)
                    what = ", ".join(f"{k}={item.get(k)!r}" for k in keys)
                else:
                    key, what = repr(item), repr(item)
                if key in seen:
                    unique = " and ".join(keys) if list_type == "map" else "value"
                    out.append(Problem(ident, format_path(loc + (i,)),
                                       f"duplicate entry ({what}, also at [{seen[key]}]): each entry needs a "
                                       f"unique {unique}", f"schema: x-kubernetes-list-type={list_type}"))
                else:
                    seen[key] = i
        return out

    def _cel_problems(self, ks: KindSchema, obj: dict[str, Any], ident: str) -> list[Problem]:
        out = []
        for schema, value, loc in walk(ks.schema, with_defaults(ks.schema, obj)):
            for rule in schema.get("x-kubernetes-validations") or []:
                text = " ".join(str(rule.get("rule", "")).split())
                if is_transition_rule(text):
                    continue
                fn = CEL_RULES.get(text)
                if fn is None:
                    self.unchecked_rules.add(text)
                    continue
                try:
                    ok = fn(value)
                except (KeyError, TypeError, AttributeError, IndexError):
                    ok = False
                if not ok:
                    out.append(Problem(ident, format_path(loc), rule.get("message") or f"violates {text}",
                                       f"CEL: {text}"))
        return out

    # -- a set of objects -----------------------------------------------------------------------------

    def check_all(self, objects: Sequence[Any]) -> list[Problem]:
        """Every object on its own, then the references between them."""
        problems: list[Problem] = []
        for i, obj in enumerate(objects):
            problems += self.check(obj, i)
        problems += references(objects)
        return problems


def object_id(obj: Any, index: int = 0) -> str:
    if not isinstance(obj, dict):
        return f"object #{index + 1}"
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    kind = obj.get("kind") or "object"
    name = meta.get("name") or f"#{index + 1}"
    return f"{kind}/{meta['namespace']}/{name}" if meta.get("namespace") else f"{kind}/{name}"


# --- metadata, webhook, references --------------------------------------------------------------------

Found = tuple[Loc, str, str]  # (path, message, rule)


def _metadata(ks: KindSchema, obj: dict[str, Any]) -> list[Found]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [(("metadata",), "metadata with a name is required", "metadata")]
    out: list[Found] = []
    for key in sorted(set(meta) - _OBJECT_META):
        close = difflib.get_close_matches(key, sorted(_OBJECT_META), n=1, cutoff=0.6)
        out.append((("metadata", key), f"unknown field {key!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
                    "metadata: unknown field"))
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        out.append((("metadata", "name"), "a name is required", "metadata"))
    elif len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        out.append((("metadata", "name"), f"{name!r} must be a lowercase DNS subdomain: at most 253 characters "
                    "of a-z, 0-9, '-' and '.', starting and ending with a letter or digit", "metadata"))
    namespace = meta.get("namespace")
    if ks.namespaced and not namespace:
        out.append((("metadata", "namespace"), f"{ks.kind} is namespaced: a namespace is required", "metadata"))
    elif not ks.namespaced and namespace is not None:
        out.append((("metadata", "namespace"), f"{ks.kind} is cluster-scoped: it takes no namespace", "metadata"))
    elif namespace and (not isinstance(namespace, str) or len(namespace) > 63 or not DNS_LABEL.match(namespace)):
        out.append((("metadata", "namespace"), f"{namespace!r} must be a DNS label: at most 63 characters of "
                    "a-z, 0-9 and '-', starting and ending with a letter or digit", "metadata"))
    for field_name in ("labels", "annotations"):
        entries = meta.get(field_name)
        if entries is None:
            continue
        if not isinstance(entries, dict):
            out.append((("metadata", field_name), "must be a mapping of strings", "metadata"))
            continue
        for key, value in entries.items():
            why = qualified_name_problem(str(key))
            if why:
                out.append((("metadata", field_name, str(key)), f"invalid key: {why}", "metadata"))
            why = label_value_problem(value) if field_name == "labels" else (
                None if isinstance(value, str) else f"{value!r} must be a string")
            if why:
                out.append((("metadata", field_name, str(key)), why, "metadata"))
    return out


def _webhook(kind: str, obj: dict[str, Any]) -> list[Found]:
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
            out.append((("spec", "fairSharing", "weight"), "when not 0, weight must be greater than 1e-9",
                        "webhook: fairSharing"))
    if kind not in ("ClusterQueue", "Cohort"):
        return out
    parent_field = "cohortName" if kind == "ClusterQueue" else "parentName"
    has_parent = bool(spec.get(parent_field))
    seen_resources: set[str] = set()
    seen_flavors: set[str] = set()
    groups = spec.get("resourceGroups") if isinstance(spec.get("resourceGroups"), list) else []
    for i, rg in enumerate(groups):
        if not isinstance(rg, dict):
            continue
        here: Loc = ("spec", "resourceGroups", i)
        covered = rg.get("coveredResources") if isinstance(rg.get("coveredResources"), list) else []
        for j, name in enumerate(covered):
            why = qualified_name_problem(str(name))
            if why:
                out.append((here + ("coveredResources", j), f"invalid resource name {name!r}: {why}",
                            "webhook: resource name"))
            if name in seen_resources:
                out.append((here + ("coveredResources", j), f"resource {name!r} is already covered by an earlier "
                            "resource group; each resource may be in one group only", "webhook: resourceGroups"))
            seen_resources.add(name)
        flavors = rg.get("flavors") if isinstance(rg.get("flavors"), list) else []
        for j, fq in enumerate(flavors):
            if not isinstance(fq, dict):
                continue
            if fq.get("name") in seen_flavors:
                out.append((here + ("flavors", j, "name"), f"flavor {fq.get('name')!r} already appears in this or "
                            "an earlier resource group; each flavor may be in one group only", "webhook: resourceGroups"))
            seen_flavors.add(fq.get("name"))
            resources = fq.get("resources") if isinstance(fq.get("resources"), list) else []
            for k, rq in enumerate(resources[:len(covered)]):
                if not isinstance(rq, dict):
                    continue
                at = here + ("flavors", j, "resources", k)
                if rq.get("name") != covered[k]:
                    out.append((at + ("name",), f"{rq.get('name')!r} must match coveredResources[{k}] "
                                f"({covered[k]!r}): list a flavor's resources in the order of coveredResources",
                                "webhook: resourceGroups"))
                for q in ("nominalQuota", "borrowingLimit", "lendingLimit"):
                    v = parse_quantity(rq.get(q)) if q in rq else None
                    if v is not None and v < 0:
                        out.append((at + (q,), f"{rq[q]!r} must be non-negative", "webhook: quota"))
                limits = ("lendingLimit",) if kind == "ClusterQueue" else ("borrowingLimit", "lendingLimit")
                for q in limits:  # a ClusterQueue's borrowingLimit is the CEL rule's
                    if q in rq and not has_parent:
                        out.append((at + (q,), f"must be nil when {parent_field} is empty: a {kind} without "
                                    f"{'a cohort' if kind == 'ClusterQueue' else 'a parent'} neither borrows nor lends",
                                    "webhook: limits"))
                if kind == "ClusterQueue" and "lendingLimit" in rq:
                    lend, nominal = parse_quantity(rq["lendingLimit"]), parse_quantity(rq.get("nominalQuota"))
                    if lend is not None and nominal is not None and lend > nominal:
                        out.append((at + ("lendingLimit",), f"{rq['lendingLimit']!r} must be less than or equal to "
                                    f"the nominalQuota ({rq.get('nominalQuota')!r})", "webhook: lendingLimit"))
    selector = spec.get("namespaceSelector") if kind == "ClusterQueue" else None
    if isinstance(selector, dict):
        for j, req in enumerate(selector.get("matchExpressions") or []):
            if not isinstance(req, dict):
                continue
            at = ("spec", "namespaceSelector", "matchExpressions", j)
            op, values = req.get("operator"), req.get("values") or []
            if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
                out.append((at + ("operator",), f"{op!r} is not one of In, NotIn, Exists, DoesNotExist",
                            "webhook: namespaceSelector"))
            elif op in ("In", "NotIn") and not values:
                out.append((at + ("values",), f"must be non-empty when operator is {op}", "webhook: namespaceSelector"))
            elif op in ("Exists", "DoesNotExist") and values:
                out.append((at + ("values",), f"must be empty when operator is {op}", "webhook: namespaceSelector"))
    return out


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
            out.append(Problem(object_id(obj, i), "metadata.name", f"defined twice (objects #{seen[key] + 1} "
                               f"and #{i + 1})", "reference"))
        seen[key] = i
        names.setdefault(str(obj.get("kind")), set()).add(str(obj["metadata"].get("name")))
    parents: dict[str, str] = {}
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict) or not isinstance(obj.get("spec"), dict):
            continue
        kind, spec, ident = obj.get("kind"), obj["spec"], object_id(obj, i)

        def need(loc: Loc, target_kind: str, target: Any) -> None:
            if target not in names.get(target_kind, set()):
                out.append(Problem(ident, format_path(loc), f"refers to {target_kind} {target!r}, which is not among "
                                   f"the generated objects", "reference"))

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
            out.append(Problem(f"Cohort/{start}", "spec.parentName", "the cohort tree has a cycle: "
                               + " -> ".join(chain + [start]) + " (Kueue disables every member of a cycle)",
                               "reference"))
    return out


def schemas(directory: Path | str | None = None) -> CrdSchemas:
    """The CRD schemas of `directory` (default: $FAIRSHARE_KUEUE_CRDS, else the bundled ones),
    loaded once per directory: parsing them takes a moment."""
    return _schemas(str(Path(directory or os.environ.get(CRDS_ENV) or BUNDLED_CRDS).resolve()))


@functools.lru_cache(maxsize=8)
def _schemas(directory: str) -> CrdSchemas:
    return CrdSchemas(directory)


def check_objects(objects: Sequence[Any], directory: Path | str | None = None) -> None:
    """Raise InvalidManifest listing every problem of `objects`; CrdError if the CRDs are missing."""
    crds = schemas(directory)
    problems = crds.check_all(objects)
    if problems:
        raise InvalidManifest(problems)


__all__ = [
    "CEL_RULES", "CrdError", "CrdSchemas", "InvalidManifest", "Problem", "check_objects", "parse_quantity",
    "references", "schemas",
]
