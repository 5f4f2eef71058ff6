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

from fairshare.connectors.source import Published

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
