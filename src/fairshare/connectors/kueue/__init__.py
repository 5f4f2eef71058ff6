"""Enforce a published allocation in Kubernetes as Kueue quotas (kueue.x-k8s.io/v1beta2).

- `plan`: which ResourceFlavors, Cohorts, ClusterQueues and LocalQueues, with what numbers. Pure.
- `manifests`: the plan as objects (plain dicts), YAML and files.
- `schema`: offline validation against Kueue's own CRDs (`crds/`, package data): the OpenAPI
  schema, the CRDs' CEL rules (`cel`), what Kueue's webhook adds (`webhook`) and the
  `references` between the objects; findings are `problems`.
- `apply`: server-side apply through the Kubernetes client; `sync` is the whole step.

The names callers use are re-exported here (`from fairshare.connectors import kueue`).  Importing
this package is cheap: jsonschema, cel-python and the kubernetes client load when they are used.
"""

from fairshare.connectors.kueue.apply import (
    APPLY_PATCH,
    ApplyError,
    Failure,
    NoCluster,
    Retired,
    Unreachable,
    apply,
    custom_objects_api,
    push,
    retire,
    sync,
)
from fairshare.connectors.kueue.manifests import (
    by_kind,
    deletions,
    deletions_file,
    file_names,
    manifests,
    render,
    to_yaml,
    write,
    write_deletions,
)
from fairshare.connectors.kueue.plan import (
    API_VERSION,
    DEFAULT_LABEL_KEY,
    DEFAULT_RESOURCE,
    FIELD_MANAGER,
    GROUP,
    KINDS,
    MANAGED_BY,
    NAMESPACED,
    OWN_SUFFIX,
    PLURALS,
    QUOTAS,
    VERSION,
    Group,
    KueueOptions,
    MappingError,
    Plan,
    Queue,
    k8s_name,
    plan,
    quantity,
)
from fairshare.connectors.kueue.problems import InvalidManifest, Problem
from fairshare.connectors.kueue.schema import CRDS_ENV, CrdError, CrdSchemas, check_objects, schemas

check = check_objects  # validate against Kueue's CRD schemas; raises InvalidManifest

__all__ = [
    "API_VERSION",
    "APPLY_PATCH",
    "CRDS_ENV",
    "DEFAULT_LABEL_KEY",
    "DEFAULT_RESOURCE",
    "FIELD_MANAGER",
    "GROUP",
    "KINDS",
    "MANAGED_BY",
    "NAMESPACED",
    "OWN_SUFFIX",
    "PLURALS",
    "QUOTAS",
    "VERSION",
    "ApplyError",
    "CrdError",
    "CrdSchemas",
    "Failure",
    "Group",
    "InvalidManifest",
    "KueueOptions",
    "MappingError",
    "NoCluster",
    "Plan",
    "Problem",
    "Queue",
    "Retired",
    "Unreachable",
    "apply",
    "by_kind",
    "check",
    "check_objects",
    "custom_objects_api",
    "deletions",
    "deletions_file",
    "file_names",
    "k8s_name",
    "manifests",
    "plan",
    "push",
    "quantity",
    "render",
    "retire",
    "schemas",
    "sync",
    "to_yaml",
    "write",
    "write_deletions",
]
