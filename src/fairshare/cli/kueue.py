"""`fairshare sync kueue`: push a published allocation into Kubernetes as Kueue quotas.

Manifests are generated and validated against Kueue's CRD schemas before anything is written or
applied; `--apply` server-side-applies them to the current kube context, after a server-side dry
run of every object has passed (so a refusal changes nothing).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from fairshare.cli._kit import (
    SYNC_HELP,
    UsageError,
    cli_actor,
    err,
    friendly,
    loaded_files,
    out,
    requires,
    subgroup,
)
from fairshare.cli.store import DbOption, open_database
from fairshare.connectors import kueue  # light: jsonschema and kubernetes load when they are used
from fairshare.connectors.kueue import CRDS_ENV, CrdError, InvalidManifest, schemas
from fairshare.errors import Unavailable

if TYPE_CHECKING:
    from fairshare.connectors.source import Published


def _pairs(values: list[str], option: str, example: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise UsageError(f"{option} {value!r}: expected {example}")
        pairs.append((key, rest))
    return pairs


def _options(
    namespace: list[str], flavor_label: list[str], label_key: str, resource: str, quotas: str = "allocation"
) -> kueue.KueueOptions:
    namespaces: dict[str, list[str]] = {}
    for team, ns in _pairs(namespace, "--namespace", "TEAM=NAMESPACE, e.g. llama=ml-llama"):
        namespaces.setdefault(team, []).append(ns)
    labels: dict[str, dict[str, str]] = {}
    for gpu, rest in _pairs(
        flavor_label, "--flavor-label", "GPU_TYPE=KEY=VALUE, e.g. A100=nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB"
    ):
        key, sep, value = rest.partition("=")
        if not sep or not key:
            raise UsageError(f"--flavor-label {gpu}={rest!r}: expected GPU_TYPE=KEY=VALUE")
        labels.setdefault(gpu, {})[key] = value
    if quotas not in kueue.QUOTAS:
        raise UsageError(f"--quotas {quotas!r}: expected one of {', '.join(kueue.QUOTAS)}")
    return kueue.KueueOptions(
        resource=resource, label_key=label_key, flavor_labels=labels, namespaces=namespaces, quotas=quotas
    )


def _published(scenario: Path | None, round_id: int | None, db: str | None, force: bool = False) -> Published:
    from fairshare.connectors.source import from_file, from_round, not_newest
    from fairshare.store.db import session_factory

    if scenario is not None:
        if not scenario.is_file():
            raise UsageError(f"no scenario file at {scenario}; give a scenario file or --round ID")
        loaded_files.append(scenario)
        return from_file(scenario)
    assert round_id is not None
    with session_factory(open_database(db))() as session:
        pub = from_round(session, round_id)
        why = not_newest(session, round_id)
        if why is not None and not force:
            raise UsageError(f"{why}; --force pushes round {round_id} anyway")
        return pub


def _write(objects: list[dict[str, Any]], directory: Path) -> list[str]:
    try:
        return kueue.write(objects, directory)
    except OSError as e:
        raise UsageError(f"cannot write to {directory}: {e.strerror or e}") from None


def _record(db: str | None, round_id: int, after: dict[str, Any]) -> None:
    """Who synced which round where, and how it went, in the round's audit log."""
    from fairshare.service.ops.sync import record_sync
    from fairshare.store.db import session_factory

    with session_factory(open_database(db))() as session:
        record_sync(session, cli_actor(), "kueue", round_id, after)


def _apply(
    objects: list[dict[str, Any]], refs: list[dict[str, Any]], kubeconfig: Path | None, context: str | None
) -> tuple[str, list[str], kueue.Retired | None]:
    """Push the objects, then delete the archived nodes' objects that carry fairshare's managed-by label."""
    try:
        api, where = kueue.custom_objects_api(kubeconfig, context)
    except kueue.NoCluster as e:
        raise UsageError(
            f"{e}; set KUBECONFIG or --kubeconfig and --context, or write the manifests with --out DIR"
        ) from None
    host = getattr(api.api_client.configuration, "host", "?")
    try:
        done = kueue.push(objects, api)
        return where, done, kueue.retire(refs, api) if refs else None
    except kueue.Unreachable as e:
        raise Unavailable(f"cannot reach the Kubernetes API server at {host} ({where}): {e}") from None


@friendly
@requires("kueue", "service", command="fairshare sync kueue")  # service: connectors.source reads the store
def sync_kueue(
    scenario: Path = typer.Argument(
        None, help="Scenario file: allocate it and enforce the result.", show_default=False
    ),
    round_id: int = typer.Option(None, "--round", help="Enforce this published round from the database instead."),
    out_dir: Path = typer.Option(
        None,
        "--out",
        help="Write the manifests into this directory, one YAML file "
        "per kind (for kubectl apply --server-side -f DIR or GitOps).",
    ),
    do_apply: bool = typer.Option(
        False,
        "--apply",
        help="Server-side apply them to the current kube context (after a server-side dry run of every object).",
    ),
    namespace: list[str] = typer.Option(
        [],
        "--namespace",
        help="TEAM=NAMESPACE: a namespace whose jobs use the "
        "team's quota (repeat; default: the namespace named after the team).",
    ),
    flavor_label: list[str] = typer.Option(
        [],
        "--flavor-label",
        help="GPU_TYPE=KEY=VALUE: a node label of that type's nodes (repeat; default: --label-key=GPU_TYPE).",
    ),
    label_key: str = typer.Option(
        kueue.DEFAULT_LABEL_KEY, "--label-key", help="Node label whose value is the GPU type's name."
    ),
    resource: str = typer.Option(kueue.DEFAULT_RESOURCE, "--resource", help="Resource name pods request GPUs as."),
    quotas: str = typer.Option(
        "allocation",
        "--quotas",
        help="nominalQuota from the published 'allocation' (any policy), or from the 'guarantee's, so that "
        "Kueue's fair sharing computes the policy.sharing surplus split itself as demand changes.",
    ),
    crds: Path = typer.Option(
        None,
        "--crds",
        envvar=CRDS_ENV,
        help="Directory of Kueue CRD files to validate against (default: the bundled Kueue v0.19 CRDs).",
    ),
    kubeconfig: Path = typer.Option(
        None, "--kubeconfig", help="Kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."
    ),
    context: str = typer.Option(None, "--context", help="Kube context (default: the current one)."),
    force: bool = typer.Option(
        False,
        "--force",
        help="With --round: push it even if a newer round is published (the schedulers hold the newest).",
    ),
    db: str = DbOption,
) -> None:
    """Enforce an allocation in Kubernetes: Kueue ResourceFlavors, Cohorts, ClusterQueues and LocalQueues.

    Without --out or --apply, prints the manifests (YAML) to stdout."""
    if (scenario is None) == (round_id is None):
        raise UsageError("give either a scenario file or --round ID")
    options = _options(namespace, flavor_label, label_key, resource, quotas)
    published = _published(scenario, round_id, db, force)
    try:
        plan = kueue.plan(published, options)
        objects = kueue.render(plan, published.label, options)
        kueue.check(objects, crds)
    except (kueue.MappingError, CrdError) as e:
        raise UsageError(str(e)) from None
    except InvalidManifest as e:  # (clikit escapes the message: "[schema: ...]" is not markup)
        lines = "\n".join(f"  {p}" for p in e.problems)
        raise UsageError(f"Kueue would reject the generated objects (nothing written or applied):\n{lines}") from None
    for note in plan.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    for rule in sorted(schemas(crds).unchecked_rules):  # a rule calling a function fairshare's CEL lacks
        err.print(
            f"[yellow]note:[/] not checked offline (this CEL rule cannot be evaluated here): {escape(rule)}",
            highlight=False,
        )
    summary = (
        f"{len(plan.flavors)} ResourceFlavors, {len(plan.groups)} Cohorts, {len(plan.queues)} ClusterQueues, "
        f"{sum(len(q.namespaces) for q in plan.queues)} LocalQueues"
    )
    if out_dir is None and not do_apply:
        sys.stdout.write(kueue.to_yaml(objects))
        err.print(f"{published.label}: {summary}; valid against Kueue's CRD schemas", highlight=False)
        return
    refs = kueue.deletions(plan)
    if out_dir is not None:
        files = _write(objects, out_dir)
        out.print(f"{published.label}: wrote {summary} to {out_dir}: {', '.join(files)}", highlight=False)
        try:
            listed = kueue.write_deletions(refs, out_dir)
        except OSError as e:
            raise UsageError(f"cannot write {kueue.deletions_file(out_dir)}: {e.strerror or e}") from None
        if listed is not None:
            out.print(
                f"{len(refs)} object(s) of archived nodes to delete listed in {listed} "
                f"(kubectl delete -f {listed}; outside {out_dir}, so applying it cannot bring them back)",
                highlight=False,
            )
    if do_apply:
        try:
            where, done, retired = _apply(objects, refs, kubeconfig, context)
        except (kueue.ApplyError, Unavailable) as e:
            if round_id is not None:
                _record(db, round_id, {"result": "failed", "source": published.label, "error": str(e)})
            if isinstance(e, kueue.ApplyError):
                changed = "nothing was changed" if e.dry_run else "the others were applied; fix and re-run to converge"
                lines = "\n".join(f"  {f}" for f in e.failures)
                raise Unavailable(f"the cluster refused {len(e.failures)} object(s) ({changed}):\n{lines}") from None
            raise
        if round_id is not None:
            after = {"result": "applied", "source": published.label, "context": where, "objects": len(done)}
            _record(db, round_id, {**after, **(retired.summary() if retired else {})})
        out.print(
            f"{published.label}: applied {summary} to {where} (server-side apply, field manager {kueue.FIELD_MANAGER})",
            highlight=False,
        )
        if retired is not None:
            for ident in retired.deleted:
                out.print(f"deleted {ident} (archived)", highlight=False)
            for ident in retired.gone:
                out.print(f"{ident} (archived) is not on the cluster: nothing to delete", highlight=False)
            for ident in retired.kept:
                err.print(
                    f"[yellow]note:[/] {escape(ident)} (archived) was left: it does not carry "
                    f"{escape(next(iter(kueue.MANAGED_BY)))}=fairshare, so fairshare does not own it",
                    highlight=False,
                )


def register(app: typer.Typer) -> None:
    """Add `sync kueue` to the CLI, joining the `sync` group that `sync slurm` may have made."""
    subgroup(app, "sync", SYNC_HELP).command("kueue")(sync_kueue)
