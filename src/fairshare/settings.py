"""The service's configuration: one typed object read from FAIRSHARE_* environment variables.

`fairshare serve` builds it once (its options over the environment), checks it, and hands the whole
object to its uvicorn workers in one variable, FAIRSHARE_SETTINGS (JSON), which `serve_app` reads
back: a worker never re-reads, and never half-reads, the variables its parent saw.

Imported by the service and the store only: pydantic-settings is part of the `service` extra, and
`fairshare --help` must not load it.  The client commands' FAIRSHARE_URL and FAIRSHARE_TOKEN are
typer options of their own (fairshare.cli.rounds).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from fairshare.errors import UserError

PREFIX = "FAIRSHARE_"
HANDOVER = "FAIRSHARE_SETTINGS"  # serve -> its workers: the whole Settings as JSON
SyncTarget = Literal["slurm", "kueue"]
TARGETS: tuple[str, ...] = get_args(SyncTarget)


class SettingsError(UserError, ValueError):
    """A FAIRSHARE_* variable (or the option that stands for it) has a value fairshare cannot use;
    the message names it.  The CLI exits 2."""


class Settings(BaseSettings):
    """Everything the service reads from its environment, typed and checked in one place.
    An empty variable counts as unset (its default applies)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    database_url: str = Field(
        "sqlite:///./fairshare.db",
        description=(
            "The database: sqlite:///path/to/fairshare.db or postgresql://user@host:5432/dbname "
            "(`--db` of the CLI's commands)."
        ),
    )
    secret_key: str | None = Field(
        None,
        repr=False,
        description=(
            "Signs the web pages' session cookies.  Unset: a random key per process, so sign-ins end "
            "when the server restarts and several workers do not share them."
        ),
    )
    token_cache_seconds: float = Field(
        5.0,
        ge=0,
        allow_inf_nan=False,
        description=(
            "How long a worker remembers which member an API token belongs to (0: not at all).  A change "
            "made by another process is seen within this time; a change made by this one at once."
        ),
    )
    sync_on_publish: Annotated[tuple[SyncTarget, ...], NoDecode] = Field(
        (),
        description=(
            "Schedulers to push a round's allocation into whenever it is published or an appeal changes "
            "it: slurm, kueue, or slurm,kueue (`serve --sync`)."
        ),
    )
    slurm_cluster: str | None = Field(
        None, description=("Sync to Slurm: the cluster (unset: the only one slurmdbd knows).")
    )
    slurm_prefix: str = Field("fs-", description="Sync to Slurm: the prefix of the accounts fairshare manages.")
    slurm_gres_map: str | None = Field(
        None,
        description=("Sync to Slurm: GPU type to gres type, e.g. H100=h100,V100=- (unset: the type in lower case)."),
    )
    slurm_users: str | None = Field(
        None,
        description=(
            "Sync to Slurm: MEMBER=UNIXUSER,... : members with a member or lead grant on a team get a user "
            "association with its account, as `sync slurm --users` gives them (unset: accounts only)."
        ),
    )
    kueue_out: Path | None = Field(
        None,
        description=(
            "Sync to Kueue: write the manifests into this directory (unset: apply them to the current "
            "kube context, or in a pod to its service account)."
        ),
    )

    @field_validator("sync_on_publish", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """`slurm,kueue` (a variable) or a list (an option, or the JSON handed to a worker)."""
        names = value.split(",") if isinstance(value, str) else value
        if not isinstance(names, list | tuple):
            return value
        names = [n.strip() for n in names if isinstance(n, str) and n.strip()]
        for name in names:
            if name not in TARGETS:
                raise ValueError(f"unknown sync target {name!r}; use {' or '.join(TARGETS)}")
        return tuple(names)


class _Given(Settings):
    """Checks values given to it alone: neither the process's environment nor a file is read."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def variable(field: str) -> str:
    """The environment variable of a Settings field: token_cache_seconds -> FAIRSHARE_TOKEN_CACHE_SECONDS."""
    return PREFIX + field.upper()


def load_settings(
    env: Mapping[str, str] | None = None, /, *, labels: Mapping[str, str] | None = None, **given: Any
) -> Settings:
    """The settings from `env` (default: this process's environment), `given` values (a command's
    options, by field name) taking precedence.  A bad value raises SettingsError naming its variable,
    or for a given value its label if `labels` has one (e.g. {"sync_on_publish": "--sync"})."""
    try:
        if env is None:
            return Settings(**given)
        fields = {name: env[variable(name)] for name in Settings.model_fields if env.get(variable(name))}
        return _plain(_Given(**{**fields, **given}))
    except ValidationError as e:
        given_as = {name: label for name, label in (labels or {}).items() if name in given}
        raise _error(e, {**{name: variable(name) for name in Settings.model_fields}, **given_as}) from None


def hand_over(settings: Settings) -> None:
    """Pass `settings` to the worker processes this process starts next (in FAIRSHARE_SETTINGS)."""
    os.environ[HANDOVER] = settings.model_dump_json()


def handed_over() -> Settings:
    """The settings `fairshare serve` handed to this worker; outside `serve`, the environment's."""
    text = os.environ.get(HANDOVER)
    if not text:
        return load_settings()
    try:
        return _plain(_Given.model_validate_json(text))
    except ValidationError as e:
        raise _error(e, {name: f"{HANDOVER} ({name})" for name in Settings.model_fields}) from None


def _plain(checked: _Given) -> Settings:
    """The same values as a Settings (equal to one read from the environment)."""
    return Settings.model_construct(**checked.model_dump())


def _error(e: ValidationError, labels: Mapping[str, str]) -> SettingsError:
    lines = []
    for problem in e.errors(include_url=False):
        field = str(problem["loc"][0]) if problem["loc"] else ""
        message = problem["msg"].removeprefix("Value error, ")
        got = f" (got {problem['input']!r})" if isinstance(problem.get("input"), str | int | float) else ""
        lines.append(f"{labels.get(field, field)}: {message}{got}")
    return SettingsError("; ".join(lines))
