"""Server-side apply of Kueue objects through a Kubernetes `CustomObjectsApi`: the only cluster I/O.

`apply()` and `push()` (dry run, then apply) go through an API object the caller builds (the CLI
and the service with `custom_objects_api()`; tests, a fake); `sync()` is the whole step:
generate, validate offline, push.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairshare.connectors.kueue.manifests import deletions, render
from fairshare.connectors.kueue.plan import (
    API_VERSION,
    FIELD_MANAGER,
    MANAGED_BY,
    NAMESPACED,
    PLURALS,
    KueueOptions,
    plan,
)
from fairshare.connectors.kueue.schema import check_objects
from fairshare.errors import FairshareError, Unavailable, UserError

if TYPE_CHECKING:
    from fairshare.connectors.source import Published

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


def apply(
    objects: Sequence[dict[str, Any]], api: Any, *, field_manager: str = FIELD_MANAGER, dry_run: bool = False
) -> list[str]:
    """Server-side apply each object through `api` (a kubernetes.client.CustomObjectsApi), in order.

    Force-applies as `field_manager` (fairshare owns the fields it writes; a re-run converges) and
    asks for strict field validation.  `dry_run` runs every admission check, webhooks included,
    without persisting.  Returns the ids applied; raises ApplyError listing every refusal (it goes
    on past a refused object, so one bad object does not hide the others) or Unreachable."""
    done, failures = [], []
    for obj in objects:
        ident = _ident(obj)
        try:
            _call(
                api,
                "patch",
                obj,
                body=obj,
                field_manager=field_manager,
                force=True,
                field_validation="Strict",
                _content_type=APPLY_PATCH,
                dry_run="All" if dry_run else None,
            )
        except _Refused as e:  # go on: one bad object must not hide the others
            failures.append(Failure(ident, e.status, _explain(e.status, e.body, obj["kind"], obj["metadata"])))
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
        return (
            f"{message}: create namespace {meta.get('namespace')!r} or map the team to an existing one with "
            "--namespace TEAM=NAMESPACE"
        )
    if status == 404:
        return (
            f"{message or 'not found'}: is Kueue installed, serving {API_VERSION} {PLURALS[kind]}? "
            "(kubectl api-resources --api-group=kueue.x-k8s.io)"
        )
    if status in (401, 403):
        return f"{message or 'forbidden'}: the kube context's user may not server-side apply {PLURALS[kind]}"
    return message or "refused"


def push(objects: Sequence[dict[str, Any]], api: Any, *, field_manager: str = FIELD_MANAGER) -> list[str]:
    """Dry-run every object on the server (webhooks included), then apply them all: a refusal in the
    dry run changes nothing."""
    apply(objects, api, field_manager=field_manager, dry_run=True)
    return apply(objects, api, field_manager=field_manager)


@dataclass
class Retired:
    """What `retire` did with each archived node's object."""

    deleted: list[str]
    gone: list[str]  # not on the cluster (deleted already, or never applied)
    kept: list[str]  # not carrying fairshare's managed-by label: someone else's, left alone

    def summary(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "already_gone": self.gone, "kept_unmanaged": self.kept}


def retire(refs: Sequence[dict[str, Any]], api: Any) -> Retired:
    """Delete the archived nodes' objects (`manifests.deletions`), deepest first, but only those that carry
    fairshare's managed-by label: each is read first, deleted with its uid and resourceVersion as
    preconditions (an object replaced in between is not deleted), after a server-side dry run of every
    deletion.  Raises ApplyError listing every refusal, or Unreachable."""
    chosen: list[tuple[dict[str, Any], dict[str, Any]]] = []
    gone, kept, failures = [], [], []
    for ref in refs:
        ident = _ident(ref)
        try:
            live = _call(api, "get", ref)
        except _Refused as e:
            if e.status == 404:
                gone.append(ident)
            else:
                failures.append(Failure(ident, e.status, _explain(e.status, e.body, ref["kind"], ref["metadata"])))
            continue
        labels = (live.get("metadata") or {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in MANAGED_BY.items()):
            kept.append(ident)
            continue
        chosen.append((ref, live))
    if failures:
        raise ApplyError(failures, dry_run=True)
    for dry_run in (True, False):
        for ref, live in chosen:
            meta = live.get("metadata") or {}
            body = {"preconditions": {"uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")}}
            try:
                _call(api, "delete", ref, body=body, dry_run="All" if dry_run else None)
            except _Refused as e:
                failures.append(
                    Failure(_ident(ref), e.status, _explain(e.status, e.body, ref["kind"], ref["metadata"]))
                )
        if failures:
            raise ApplyError(failures, dry_run)
    return Retired([_ident(ref) for ref, _ in chosen], gone, kept)


class _Refused(FairshareError):
    """The API server refused one object (caught here and reported as a Failure)."""

    def __init__(self, status: int, body: Any):
        self.status, self.body = status, body


def _ident(obj: Mapping[str, Any]) -> str:
    meta, kind = obj["metadata"], obj["kind"]
    return f"{kind}/{meta['namespace']}/{meta['name']}" if kind in NAMESPACED else f"{kind}/{meta['name']}"


def _call(api: Any, verb: str, ref: Mapping[str, Any], **kwargs: Any) -> Any:
    """get, patch or delete one custom object; an HTTP refusal becomes _Refused, no answer Unreachable."""
    meta, kind = ref["metadata"], ref["kind"]
    group, version = ref["apiVersion"].split("/")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        if kind in NAMESPACED:
            fn = getattr(api, f"{verb}_namespaced_custom_object")
            return fn(group, version, meta["namespace"], PLURALS[kind], meta["name"], **kwargs)
        return getattr(api, f"{verb}_cluster_custom_object")(group, version, PLURALS[kind], meta["name"], **kwargs)
    except Exception as e:  # noqa: BLE001 - an HTTP answer (ApiException), or none at all
        status = getattr(e, "status", None)
        if not status and _no_answer(e):
            raise Unreachable(_first_line(getattr(e, "reason", None) or e)) from e
        if not isinstance(status, int) or not status:
            raise
        raise _Refused(status, getattr(e, "body", None)) from e


def sync(
    published: Published, api: Any, options: KueueOptions = KueueOptions(), crds: Path | str | None = None
) -> dict[str, Any]:
    """The whole step, for a caller that holds an API client (the CLI, or the service on publish):
    generate, validate offline, push, then delete archived nodes' objects that fairshare manages.
    Returns what an audit entry records; raises MappingError, InvalidManifest, ApplyError or Unreachable."""
    p = plan(published, options)
    objects = render(p, published.label, options)
    check_objects(objects, crds)
    done = push(objects, api)
    out: dict[str, Any] = {"result": "applied", "source": published.label, "objects": len(done)}
    if p.deletions:
        out.update(retire(deletions(p), api).summary())
    return out
