"""Push a round's allocation into Slurm and/or Kueue whenever the published allocation changes
(on publish, and when a granted appeal re-solves it), and record each push in the audit log.

Configured by the settings (FAIRSHARE_SYNC_ON_PUBLISH, FAIRSHARE_SLURM_*, FAIRSHARE_KUEUE_OUT), which
`fairshare serve --sync slurm --sync kueue ...` builds from its options and hands to its workers.  A push that
fails never undoes the publication: the failure is recorded, and `fairshare sync ...` can retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fairshare.connectors.source import Published
from fairshare.settings import Settings, load_settings

log = logging.getLogger("fairshare.sync")
Hook = Callable[[Published], dict[str, Any]]


def hooks_for(settings: Settings) -> list[tuple[str, Hook]]:
    """The pushes `settings.sync_on_publish` asks for, in its order, each configured by the settings
    of its target (see fairshare.settings)."""
    make = {"slurm": _slurm_hook, "kueue": _kueue_hook}
    return [(name, make[name](settings)) for name in settings.sync_on_publish]


def hooks_from_env(env: Mapping[str, str] | None = None) -> list[tuple[str, Hook]]:
    """hooks_for() the settings in `env` (default: this process's environment); a bad value
    raises fairshare.settings.SettingsError (a ValueError) naming its variable."""
    return hooks_for(load_settings(env))


def _slurm_hook(settings: Settings) -> Hook:
    from fairshare.connectors import slurm

    cfg = slurm.SlurmConfig(
        cluster=settings.slurm_cluster,
        prefix=settings.slurm_prefix,
        gres_map=slurm.parse_gres_map(settings.slurm_gres_map),
    )
    user_map = (
        slurm.parse_user_map(settings.slurm_users, "--slurm-users (FAIRSHARE_SLURM_USERS)")
        if settings.slurm_users
        else None
    )

    def push(pub: Published) -> dict[str, Any]:
        if user_map is None:
            return slurm.Syncer(cfg).apply(pub).summary()
        users, unmapped = slurm.unix_users(pub, user_map)
        managed = {u for us in users.values() for u in us}  # as `sync slurm --users`: only these users' associations
        return {**slurm.Syncer(cfg).apply(pub, users, managed).summary(), "members_without_user": unmapped}

    return push


def _kueue_hook(settings: Settings) -> Hook:
    from fairshare.connectors import kueue

    out = settings.kueue_out

    def push(pub: Published) -> dict[str, Any]:
        if out:
            objects = kueue.manifests(pub)
            kueue.check(objects)
            return {"written": kueue.write(objects, out), "directory": str(out)}
        api, where = kueue.custom_objects_api()
        return {**kueue.sync(pub, api), "context": where}

    return push
