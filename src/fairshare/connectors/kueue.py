"""A published allocation as Kueue objects (kueue.x-k8s.io/v1beta2), and applying them.

How fairshare's concepts map (docs/enforcement.md explains why):

| fairshare                       | Kueue                                                          |
| ------------------------------- | -------------------------------------------------------------- |
| GPU type (A100, H100, ...)      | ResourceFlavor with the nodes' labels (`nvidia.com/gpu.product`) |
| inner org node                  | Cohort; its parent node -> `spec.parentName`                   |
| team (leaf node)                | ClusterQueue in its parent's Cohort (`spec.cohortName`)        |
| own requests of an inner node   | ClusterQueue `<node>-own` in that node's Cohort                |
| allocation per team and type    | `nominalQuota` of the team's ClusterQueue for that flavor      |
| weight                          | `fairSharing.weight` of the node's Cohort or ClusterQueue      |
| limit (cap of a subtree)        | `borrowingLimit` = limit - allocation                          |
| guarantee (floor of a subtree)  | `lendingLimit` = allocation - guarantee: capacity not lent     |
| capacity nobody was allocated   | `nominalQuota` of the root Cohort, for anyone to borrow        |
| team -> namespaces              | LocalQueue per namespace; ClusterQueue `namespaceSelector`     |

`plan()` and `manifests()` are pure: Published in, plain dicts out, validated by `check()` against
Kueue's CRD schemas (see kueue_schema).  `apply()` and `push()` (dry run, then apply), the only
I/O here, server-side-apply them through a Kubernetes `CustomObjectsApi` the caller builds (the
CLI and the service with `custom_objects_api()`; tests, a fake); `sync()` is the whole step.
"""

from __future__ import annotations

from fairshare.errors import FairshareError, Unavailable, UserError

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import yaml

from fairshare.connectors.kueue_schema import DNS_LABEL, check_objects, label_value_problem, qualified_name_problem

if TYPE_CHECKING:  # not at run time: `fairshare sync kueue`'s options read this module at CLI start-up
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
PLURALS = {"ResourceFlavor": "resourceflavors", "Cohort": "cohorts", "ClusterQueue": "clusterqueues",
           "LocalQueue": "localqueues"}
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


# --- names ------------------------------------------------------------------------------------------

def k8s_name(name: str) -> str:
    """An org node's or GPU type's name as a Kubernetes name (a DNS label: a-z, 0-9, '-')."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


def _checked(name: str, what: str) -> str:
    kname = k8s_name(name)
    if not kname or len(kname) > 63 or not DNS_LABEL.match(kname):
        raise MappingError(f"{what} {name!r} gives no valid Kubernetes name ({kname!r}): names must be 1-63 "
                           "characters of a-z, 0-9 and '-'; rename it in the scenario")
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
        raise MappingError(f"node labels for unknown GPU type(s) {', '.join(unknown)}; the scenario has "
                           f"{', '.join(types)}")
    for problem in (qualified_name_problem(options.resource), qualified_name_problem(options.label_key)):
        if problem:
            raise MappingError(f"invalid resource or label name: {problem}")

    def alloc(name: str) -> dict[str, int]:
        return {t: int(gpus.get(name, {}).get(t, 0)) for t in types}

    own_requests = {r.team for r in s.requests}
    groups: list[Group] = []
    queues: list[Queue] = []
    notes: list[str] = []
    kname: dict[str, str] = {}

    def visit(node: OrgNode, parent: str | None) -> None:
        kname[node.name] = _checked(node.name, "org node")
        here = alloc(node.name)
        if not node.children:
            if parent is None:  # a lab of one team: no cohort, the whole cluster is its quota
                here = {t: max(here[t], capacity[t]) for t in types}
            queues.append(Queue(node.name, kname[node.name], parent, node.weight, here,
                                dict(node.guarantee), dict(node.limit), []))
        else:
            pool = {t: max(capacity[t] - here[t], 0) for t in types} if parent is None else {t: 0 for t in types}
            groups.append(Group(node.name, kname[node.name], parent, node.weight, here, dict(node.guarantee),
                                dict(node.limit), pool))
            if node.name in own_requests:
                children = [alloc(c.name) for c in node.children]
                own = {t: max(here[t] - sum(c[t] for c in children), 0) for t in types}
                queues.append(Queue(node.name, kname[node.name] + OWN_SUFFIX, kname[node.name], 1.0, own, {}, {}, []))
            for child in node.children:
                visit(child, kname[node.name])
        if parent is None and (node.guarantee or node.limit):
            notes.append(f"{node.name}: the root's guarantee and limit have no Kueue counterpart (there is "
                         "nothing above the root to borrow from or lend to); they are left out")

    visit(s.org, None)
    # Cohorts and ClusterQueues share one set of names: each name in Kueue's messages means one node
    _unique({**{f"{g.node} (Cohort)": g.name for g in groups},
             **{q.node if q.name == kname[q.node] else f"{q.node} (own requests)": q.name for q in queues}},
            "Cohort and ClusterQueue names")

    teams = sorted(q.node for q in queues)
    unknown = sorted(set(options.namespaces) - set(teams))
    if unknown:
        raise MappingError(f"namespace mapping for {', '.join(map(repr, unknown))}, which is not a team with a "
                           f"queue; teams are {', '.join(teams)}")
    for q in queues:
        wanted = options.namespaces.get(q.node) or [k8s_name(q.node)]
        for ns in wanted:
            if not ns or len(ns) > 63 or not DNS_LABEL.match(ns):
                raise MappingError(f"namespace {ns!r} for team {q.node!r} is not a valid namespace name "
                                   "(1-63 characters of a-z, 0-9 and '-')")
        q.namespaces = list(dict.fromkeys(wanted))
    return Plan(types, flavors, groups, queues, notes)


def _unique(names: Mapping[str, str], what: str) -> None:
    seen: dict[str, str] = {}
    for source, name in names.items():
        if name in seen:
            raise MappingError(f"{what}: {seen[name]!r} and {source!r} both become {name!r} in Kubernetes; "
                               "rename one in the scenario")
        seen[name] = source


# --- the objects ------------------------------------------------------------------------------------

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
    return {"apiVersion": API_VERSION, "kind": "ResourceFlavor",
            "metadata": _meta(name, {"fairshare/gpu": gpu, **source}),
            "spec": {"nodeLabels": labels}}


def _resource_groups(flavors: list[tuple[str, dict[str, str]]], resource: str) -> list[dict[str, Any]]:
    return [{"coveredResources": [resource],
             "flavors": [{"name": name, "resources": [{"name": resource, **quotas}]} for name, quotas in flavors]}]


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
    return {"apiVersion": API_VERSION, "kind": "Cohort",
            "metadata": _meta(g.name, {"fairshare/node": g.node, **source}), "spec": spec}


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
    spec["namespaceSelector"] = {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(q.namespaces)}]}
    spec["fairSharing"] = {"weight": quantity(q.weight)}
    spec["flavorFungibility"] = {"whenCanBorrow": "TryNextFlavor"}
    if q.cohort:
        spec["preemption"] = {"reclaimWithinCohort": options.reclaim_within_cohort,
                              "withinClusterQueue": "LowerPriority"}
    spec["resourceGroups"] = _resource_groups(flavors, options.resource)
    return {"apiVersion": API_VERSION, "kind": "ClusterQueue",
            "metadata": _meta(q.name, {"fairshare/node": q.node, **source}), "spec": spec}


def _local_queue(q: Queue, namespace: str, source: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "LocalQueue",
            "metadata": _meta(q.name, {"fairshare/node": q.node, **source}, namespace),
            "spec": {"clusterQueue": q.name}}


def check(objects: Sequence[dict[str, Any]], crds: Path | str | None = None) -> None:
    """Validate against Kueue's CRD schemas (kueue_schema); raises InvalidManifest."""
    check_objects(objects, crds)


def to_yaml(objects: Iterable[dict[str, Any]]) -> str:
    """Multi-document YAML, keys in the order written (apiVersion, kind, metadata, spec)."""
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


# --- applying (the only I/O here) -------------------------------------------------------------------

APPLY_PATCH = "application/apply-patch+yaml"


@dataclass
class Failure:
    obj: str  # "ClusterQueue/llama"
    status: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.message}" + (f" (HTTP {self.status})" if self.status else "")


class ApplyError(FairshareError):
    """The API server refused some objects; `failures` says which and why."""

    def __init__(self, failures: list[Failure], dry_run: bool):
        self.failures = failures
        self.dry_run = dry_run
        what = "the server-side dry run" if dry_run else "server-side apply"
        super().__init__(f"{what} refused {len(failures)} object(s): " + "; ".join(map(str, failures)))


class Unreachable(Unavailable):
    """No answer from the API server."""


class NoCluster(UserError):
    """No Kubernetes cluster to apply to: no kubeconfig, one that cannot be used, or a pod whose
    service account cannot be read."""


def custom_objects_api(kubeconfig: Path | str | None = None, context: str | None = None) -> tuple[Any, str]:
    """A `kubernetes.client.CustomObjectsApi` for the kube context (the kubeconfig: `kubeconfig`,
    else $KUBECONFIG, else ~/.kube/config; its current context unless `context`), or, with no
    kubeconfig inside a pod, for the pod's service account; and where it points, for messages and
    the audit log.  Raises NoCluster with one line saying what is missing or wrong."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    files = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG") or "~/.kube/config"
    if any(Path(f).expanduser().is_file() for f in files.split(os.pathsep) if f):
        try:
            api_client = config.new_client_from_config(config_file=files, context=context)
            if not context:
                _, active = config.list_kube_config_contexts(config_file=files)
                context = str((active or {}).get("name", "current context"))
            return client.CustomObjectsApi(api_client), context
        except (ConfigException, OSError, ValueError, TypeError) as e:
            raise NoCluster(f"cannot use the kubeconfig {files}: {_first_line(e)}") from None
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            return client.CustomObjectsApi(client.ApiClient(cfg)), "in-cluster service account"
        except ConfigException as e:
            raise NoCluster(f"cannot use the in-cluster service account: {_first_line(e)}") from None
    raise NoCluster(f"no Kubernetes cluster to apply to: no kubeconfig at {files} and not running in a pod")


def apply(objects: Sequence[dict[str, Any]], api: Any, *, field_manager: str = FIELD_MANAGER,
          dry_run: bool = False) -> list[str]:
    """Server-side apply each object through `api` (a kubernetes.client.CustomObjectsApi), in order.

    Force-applies as `field_manager` (fairshare owns the fields it writes; a re-run converges) and
    asks for strict field validation.  `dry_run` runs every admission check, webhooks included,
    without persisting.  Returns the ids applied; raises ApplyError listing every refusal (it goes
    on past a refused object, so one bad object does not hide the others) or Unreachable."""
    done, failures = [], []
    for obj in objects:
        meta, kind = obj["metadata"], obj["kind"]
        ident = f"{kind}/{meta['namespace']}/{meta['name']}" if kind in NAMESPACED else f"{kind}/{meta['name']}"
        kwargs: dict[str, Any] = {"field_manager": field_manager, "force": True, "field_validation": "Strict",
                                  "_content_type": APPLY_PATCH}
        if dry_run:
            kwargs["dry_run"] = "All"
        group, version = obj["apiVersion"].split("/")
        try:
            if kind in NAMESPACED:
                api.patch_namespaced_custom_object(group, version, meta["namespace"], PLURALS[kind], meta["name"],
                                                   obj, **kwargs)
            else:
                api.patch_cluster_custom_object(group, version, PLURALS[kind], meta["name"], obj, **kwargs)
        except Exception as e:  # noqa: BLE001 - an HTTP answer (ApiException), or none at all
            status = getattr(e, "status", None)
            if not status and _no_answer(e):
                raise Unreachable(_first_line(getattr(e, "reason", None) or e)) from e
            if not isinstance(status, int) or not status:
                raise
            failures.append(Failure(ident, status, _explain(status, getattr(e, "body", None), kind, meta)))
            continue
        done.append(ident)
    if failures:
        raise ApplyError(failures, dry_run)
    return done


def _no_answer(e: BaseException) -> bool:
    """A connection that failed (refused, DNS, timeout, TLS) rather than a server that said no."""
    if getattr(e, "status", None) == 0:  # the client's ApiException for TLS errors
        return True
    try:
        import urllib3
    except ImportError:  # pragma: no cover - the kubernetes client depends on it
        return isinstance(e, OSError)
    return isinstance(e, (urllib3.exceptions.HTTPError, OSError))


def _first_line(e: object) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _explain(status: int, body: Any, kind: str, meta: Mapping[str, Any]) -> str:
    message = ""
    try:
        message = json.loads(body).get("message", "") if body else ""
    except (ValueError, AttributeError):
        message = str(body)[:300]
    if status == 404 and "namespaces" in message:
        return (f"{message}: create namespace {meta.get('namespace')!r} or map the team to an existing one with "
                "--namespace TEAM=NAMESPACE")
    if status == 404:
        return (f"{message or 'not found'}: is Kueue installed, serving {API_VERSION} {PLURALS[kind]}? "
                "(kubectl api-resources --api-group=kueue.x-k8s.io)")
    if status in (401, 403):
        return f"{message or 'forbidden'}: the kube context's user may not server-side apply {PLURALS[kind]}"
    return message or "refused"


def push(objects: Sequence[dict[str, Any]], api: Any, *, field_manager: str = FIELD_MANAGER) -> list[str]:
    """Dry-run every object on the server (webhooks included), then apply them all: a refusal in the
    dry run changes nothing."""
    apply(objects, api, field_manager=field_manager, dry_run=True)
    return apply(objects, api, field_manager=field_manager)


def sync(published: Published, api: Any, options: KueueOptions = KueueOptions(),
         crds: Path | str | None = None) -> dict[str, Any]:
    """The whole step, for a caller that holds an API client (the CLI, or the service on publish):
    generate, validate offline, push.  Returns what an audit entry records; raises MappingError,
    InvalidManifest, ApplyError or Unreachable."""
    objects = manifests(published, options)
    check(objects, crds)
    done = push(objects, api)
    return {"result": "applied", "source": published.label, "objects": len(done)}

