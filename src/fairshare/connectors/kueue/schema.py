"""Check Kueue manifests offline against Kueue's own CRD schemas, before they are written or applied.

An API server with Kueue installed would reject a bad manifest at apply time, half-way through a
sync.  This module rejects it first, with one line per problem, `Kind/name: field.path: what is
wrong [rule]`, in four layers:

1. the CRD's OpenAPI v3 schema (jsonschema, Draft 4 as OpenAPI 3.0 uses), *closed*: a field the
   schema does not list is an error (the API server would silently prune it, or reject it under
   strict field validation), with a "did you mean" for renames such as v1beta1's `cohort`;
2. list semantics jsonschema does not know: `x-kubernetes-list-type: map` (unique keys) and `set`;
3. the CRD's CEL rules (`x-kubernetes-validations`), read from the CRD and evaluated by a CEL
   library (kueue.cel), as the API server does, after the schema's defaults are filled in.
   Transition rules (those reading `oldSelf`) only constrain updates and are skipped;
4. the checks Kueue's admission webhook adds (kueue.webhook) and object metadata (names,
   namespaces, labels) that the schema leaves open.

`check_objects` also checks the references between the objects of one sync (kueue.references)
and raises `InvalidManifest` listing all.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fairshare.connectors.kueue import cel
from fairshare.connectors.kueue.formats import DNS_LABEL, DNS_SUBDOMAIN, label_value_problem, qualified_name_problem
from fairshare.connectors.kueue.plan import GROUP
from fairshare.connectors.kueue.problems import InvalidManifest, Loc, Problem, format_path, object_id
from fairshare.connectors.kueue.references import references
from fairshare.connectors.kueue.webhook import Found, webhook_problems
from fairshare.errors import UserError

BUNDLED_CRDS = Path(__file__).with_name("crds")  # package data: the Kueue release fairshare was tested with
CRDS_ENV = "FAIRSHARE_KUEUE_CRDS"


class CrdError(UserError):
    """The CRD schemas to validate against cannot be found or read."""


# --- schema walking -----------------------------------------------------------------------------------

_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf")


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a structural schema that rejects unknown fields: `additionalProperties: false` on
    every object node that lists `properties` (unless it preserves unknown fields)."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if not isinstance(node, dict):
            return
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
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
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
}
_QUANTITY_HINT = 'e.g. 8, "500m", "1.5" or "2Ki"'


class CrdSchemas:
    """Kueue's CRDs from a directory of `kueue.x-k8s.io_<plural>.yaml` files.

    Default: the copies bundled with fairshare (Kueue v0.19); `directory` or $FAIRSHARE_KUEUE_CRDS
    points at another release's files."""

    def __init__(self, directory: Path | str | None = None):
        self.directory = Path(directory or os.environ.get(CRDS_ENV) or BUNDLED_CRDS)
        self.unchecked_rules: set[str] = set()  # CEL rules met that cannot be evaluated offline
        self._crds: dict[str, dict[str, Any]] | None = None
        self._kinds: dict[tuple[str, str], KindSchema] = {}

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._crds is not None:
            return self._crds
        if not self.directory.is_dir():
            raise CrdError(
                f"Kueue CRD schemas not found: {self.directory} is not a directory; point --crds "
                f"(or ${CRDS_ENV}) at a directory of Kueue's kueue.x-k8s.io_*.yaml CRD files"
            )
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        crds: dict[str, dict[str, Any]] = {}
        for path in sorted(self.directory.glob("*.yaml")) + sorted(self.directory.glob("*.yml")):
            try:
                doc = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
            except (OSError, ValueError, yaml.YAMLError) as e:  # ValueError: bad UTF-8, or a date that does not exist
                raise CrdError(f"cannot read the CRD file {path}: {e}") from None
            if (
                isinstance(doc, dict)
                and doc.get("kind") == "CustomResourceDefinition"
                and (doc.get("spec") or {}).get("group") == GROUP
            ):
                crds[doc["spec"]["names"]["kind"]] = doc
        if not crds:
            raise CrdError(
                f"no Kueue CRDs in {self.directory}: expected {GROUP} CustomResourceDefinition files "
                f"such as kueue.x-k8s.io_clusterqueues.yaml (Kueue's config/components/crd/bases)"
            )
        self._crds = crds
        return crds

    def kinds(self) -> list[str]:
        return sorted(self._load())

    def kind(self, kind: str, version: str) -> KindSchema:
        key = (kind, version)
        if key not in self._kinds:
            crds = self._load()
            if kind not in crds:
                raise CrdError(
                    f"no CRD for {GROUP} kind {kind} in {self.directory} (has: "
                    f"{', '.join(sorted(crds)) or 'none'}); expected a file like "
                    f"kueue.x-k8s.io_{kind.lower()}s.yaml"
                )
            crd = crds[kind]
            versions = {v["name"]: v for v in crd["spec"]["versions"]}
            if version not in versions:
                raise KeyError(version)
            schema = versions[version]["schema"]["openAPIV3Schema"]
            strict = closed(schema)
            # here, not at the top: the CLI imports this module at every start; no stubs pinned for it
            import jsonschema  # type: ignore[import-untyped]

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
            return [
                Problem(
                    ident,
                    "apiVersion",
                    f"{api_version!r} is not a {GROUP} version (expected {GROUP}/v1beta2)",
                    "schema: apiVersion",
                )
            ]
        if kind not in self._load():
            return [
                Problem(
                    ident, "kind", f"unknown {GROUP} kind {kind!r}; known: {', '.join(self.kinds())}", "schema: kind"
                )
            ]
        try:
            ks = self.kind(kind, version)
        except KeyError:
            served = [v["name"] for v in self._load()[kind]["spec"]["versions"]]
            return [
                Problem(
                    ident,
                    "apiVersion",
                    f"{kind} has no version {version!r}; the CRD serves {', '.join(served)}",
                    "schema: apiVersion",
                )
            ]
        problems = self._schema_problems(ks, obj, ident)
        problems += self._list_problems(ks, obj, ident)
        problems += self._cel_problems(ks, obj, ident)
        problems += [Problem(ident, format_path(loc), msg, rule) for loc, msg, rule in _metadata(ks, obj)]
        problems += [Problem(ident, format_path(loc), msg, rule) for loc, msg, rule in webhook_problems(kind, obj)]
        return sorted(set(problems), key=lambda p: (p.path, p.rule, p.message))

    def _schema_problems(self, ks: KindSchema, obj: dict[str, Any], ident: str) -> list[Problem]:
        out = []
        for e in ks.validator.iter_errors(obj):
            loc = tuple(e.absolute_path)
            if e.validator == "additionalProperties" and isinstance(e.instance, dict):
                known = sorted(e.schema.get("properties") or {})
                for extra in sorted(set(e.instance) - set(known)):
                    close = difflib.get_close_matches(extra, known, n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    out.append(
                        Problem(
                            ident,
                            format_path(loc + (extra,)),
                            f"unknown field {extra!r}{hint} ({ks.kind} {ks.version} has here: {', '.join(known)})",
                            "schema: unknown field",
                        )
                    )
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
                    out.append(
                        Problem(
                            ident,
                            format_path(loc + (i,)),
                            f"duplicate entry ({what}, also at [{seen[key]}]): each entry needs a unique {unique}",
                            f"schema: x-kubernetes-list-type={list_type}",
                        )
                    )
                else:
                    seen[key] = i
        return out

    def _cel_problems(self, ks: KindSchema, obj: dict[str, Any], ident: str) -> list[Problem]:
        out = []
        for schema, value, loc in walk(ks.schema, with_defaults(ks.schema, obj)):
            for rule in schema.get("x-kubernetes-validations") or []:
                text = cel.normalised(str(rule.get("rule", "")))
                if cel.is_transition_rule(text):
                    continue
                outcome = cel.evaluate(rule, value)
                if outcome.unchecked:
                    self.unchecked_rules.add(text)
                elif not outcome.holds:
                    out.append(Problem(ident, _rule_path(loc, rule.get("fieldPath")), outcome.message, f"CEL: {text}"))
        return out

    # -- a set of objects -----------------------------------------------------------------------------

    def check_all(self, objects: Sequence[Any]) -> list[Problem]:
        """Every object on its own, then the references between them."""
        problems: list[Problem] = []
        for i, obj in enumerate(objects):
            problems += self.check(obj, i)
        problems += references(objects)
        return problems


def _rule_path(loc: Loc, field_path: Any) -> str:
    """Where a CEL rule's failure is reported: its schema node, or the `fieldPath` below it."""
    here = format_path(loc)
    if not isinstance(field_path, str) or not field_path:
        return here
    return here + field_path if here else field_path.lstrip(".")


# --- metadata ---------------------------------------------------------------------------------------------


def _metadata(ks: KindSchema, obj: dict[str, Any]) -> list[Found]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [(("metadata",), "metadata with a name is required", "metadata")]
    out: list[Found] = []
    for key in sorted(set(meta) - _OBJECT_META):
        close = difflib.get_close_matches(key, sorted(_OBJECT_META), n=1, cutoff=0.6)
        out.append(
            (
                ("metadata", key),
                f"unknown field {key!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
                "metadata: unknown field",
            )
        )
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        out.append((("metadata", "name"), "a name is required", "metadata"))
    elif len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        out.append(
            (
                ("metadata", "name"),
                f"{name!r} must be a lowercase DNS subdomain: at most 253 characters "
                "of a-z, 0-9, '-' and '.', starting and ending with a letter or digit",
                "metadata",
            )
        )
    namespace = meta.get("namespace")
    if ks.namespaced and not namespace:
        out.append((("metadata", "namespace"), f"{ks.kind} is namespaced: a namespace is required", "metadata"))
    elif not ks.namespaced and namespace is not None:
        out.append((("metadata", "namespace"), f"{ks.kind} is cluster-scoped: it takes no namespace", "metadata"))
    elif namespace and (not isinstance(namespace, str) or len(namespace) > 63 or not DNS_LABEL.match(namespace)):
        out.append(
            (
                ("metadata", "namespace"),
                f"{namespace!r} must be a DNS label: at most 63 characters of "
                "a-z, 0-9 and '-', starting and ending with a letter or digit",
                "metadata",
            )
        )
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
            why = (
                label_value_problem(value)
                if field_name == "labels"
                else (None if isinstance(value, str) else f"{value!r} must be a string")
            )
            if why:
                out.append((("metadata", field_name, str(key)), why, "metadata"))
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
