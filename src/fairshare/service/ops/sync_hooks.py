"""Push a round's allocation into Slurm and/or Kueue whenever the published allocation changes
(on publish, and when a granted appeal re-solves it), and record each push in the audit log.

Configured by `fairshare serve --sync slurm --sync kueue ...`, which passes its options to the
app (possibly in several worker processes) as FAIRSHARE_* environment variables.  A push that
fails never undoes the publication: the failure is recorded, and `fairshare sync ...` can retry.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from fastapi import BackgroundTasks, FastAPI

from fairshare.connectors.source import Published, from_round
from fairshare.store.repo import audit

log = logging.getLogger("fairshare.sync")
Hook = Callable[[Published], dict[str, Any]]
TARGETS = ("slurm", "kueue")


def hooks_from_env(env: Mapping[str, str] = os.environ) -> list[tuple[str, Hook]]:
    """FAIRSHARE_SYNC_ON_PUBLISH=slurm,kueue; FAIRSHARE_SLURM_{CLUSTER,PREFIX,GRES_MAP};
    FAIRSHARE_KUEUE_OUT=DIR (write manifests there; unset: apply to the current kube context, or
    in a pod to its service account)."""
    names = [n.strip() for n in env.get("FAIRSHARE_SYNC_ON_PUBLISH", "").split(",") if n.strip()]
    hooks: list[tuple[str, Hook]] = []
    for name in names:
        if name == "slurm":
            hooks.append((name, _slurm_hook(env)))
        elif name == "kueue":
            hooks.append((name, _kueue_hook(env)))
        else:
            raise ValueError(f"unknown sync target {name!r} in FAIRSHARE_SYNC_ON_PUBLISH; use {' or '.join(TARGETS)}")
    return hooks


def _slurm_hook(env: Mapping[str, str]) -> Hook:
    from fairshare.connectors import slurm

    cfg = slurm.SlurmConfig(cluster=env.get("FAIRSHARE_SLURM_CLUSTER") or None,
                            prefix=env.get("FAIRSHARE_SLURM_PREFIX", "fs-"),
                            gres_map=slurm.parse_gres_map(env.get("FAIRSHARE_SLURM_GRES_MAP")))

    def push(pub: Published) -> dict[str, Any]:
        return slurm.Syncer(cfg).apply(pub).summary()

    return push


def _kueue_hook(env: Mapping[str, str]) -> Hook:
    from fairshare.connectors import kueue

    out = env.get("FAIRSHARE_KUEUE_OUT")

    def push(pub: Published) -> dict[str, Any]:
        if out:
            objects = kueue.manifests(pub)
            kueue.check(objects)
            return {"written": kueue.write(objects, Path(out)), "directory": out}
        api, where = kueue.custom_objects_api()
        return {**kueue.sync(pub, api), "context": where}

    return push


def run_hooks(app: FastAPI, round_id: int, actor: str) -> None:
    """Each configured push in turn, each recorded as `sync.<target>` with its result."""
    for name, hook in app.state.sync_hooks:
        with app.state.sessions() as session:
            try:
                after = {"result": "ok", **hook(from_round(session, round_id))}
            except Exception as e:  # noqa: BLE001 - any failure is recorded; the publication stands
                log.warning("sync %s of round %s failed: %s", name, round_id, e)
                after = {"result": "failed", "error": f"{type(e).__name__}: {e}"}
            audit(session, actor, f"sync.{name}", "round", round_id, None, after)
            session.commit()


def schedule(app: FastAPI, background: BackgroundTasks, round_id: int, actor: str) -> None:
    """Push after the response is sent, when any target is configured."""
    if app.state.sync_hooks:
        background.add_task(run_hooks, app, round_id, actor)
