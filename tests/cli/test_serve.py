"""`fairshare serve` builds the settings once (its options over the FAIRSHARE_* variables), refuses bad
ones before it starts, and hands them to uvicorn's workers in one variable, not by rewriting the
environment variable by variable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from fairshare.cli import app
from fairshare.settings import HANDOVER, Settings

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "meta-ai-2023.yaml")
runner = CliRunner()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """What uvicorn.run was called with, and the environment its workers would inherit; the
    environment starts without FAIRSHARE_* variables and is restored after the test."""
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("FAIRSHARE_")})
    monkeypatch.chdir(tmp_path)
    seen: dict[str, Any] = {}

    def run(target: str, **kwargs: Any) -> None:
        seen.update(target=target, kwargs=kwargs, environ=dict(os.environ))

    monkeypatch.setattr(uvicorn, "run", run)
    assert runner.invoke(app, ["import", EXAMPLE, "--db", f"sqlite:///{tmp_path / 'lab.db'}"]).exit_code == 0
    return seen


def test_serve_hands_the_settings_to_its_workers_in_one_variable(started: dict[str, Any], tmp_path: Path) -> None:
    os.environ.update({"FAIRSHARE_SECRET_KEY": "s3cret", "FAIRSHARE_SLURM_PREFIX": "acct-"})
    before = dict(os.environ)
    db = f"sqlite:///{tmp_path / 'lab.db'}"
    res = runner.invoke(
        app,
        [
            "serve",
            "--workers",
            "2",
            "--db",
            db,
            "--sync",
            "kueue",
            "--sync",
            "slurm",
            "--kueue-out",
            str(tmp_path / "k"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert started["target"] == "fairshare.service.api.app:serve_app" and started["kwargs"]["factory"] is True
    environ = started["environ"]
    assert {k for k in environ if environ.get(k) != before.get(k)} == {HANDOVER}
    settings = Settings.model_validate_json(environ[HANDOVER])
    assert settings.database_url == db and settings.secret_key == "s3cret"
    assert settings.sync_on_publish == ("kueue", "slurm") and settings.kueue_out == tmp_path / "k"
    assert settings.slurm_prefix == "acct-"  # not given as an option: the variable's


@pytest.mark.parametrize(
    "env, args, message",
    [
        ({}, ["--sync", "lsf"], "error: --sync: unknown sync target 'lsf'; use slurm or kueue"),
        ({"FAIRSHARE_SYNC_ON_PUBLISH": "lsf"}, [], "error: FAIRSHARE_SYNC_ON_PUBLISH: unknown sync target 'lsf'"),
        (
            {"FAIRSHARE_TOKEN_CACHE_SECONDS": "soon"},
            [],
            "error: FAIRSHARE_TOKEN_CACHE_SECONDS: Input should be a valid number",
        ),
        ({}, ["--sync", "slurm", "--slurm-gres-map", "H100"], "error: --gres-map entry 'H100': write TYPE=GRES"),
    ],
)
def test_serve_refuses_bad_settings_before_it_starts(
    started: dict[str, Any], tmp_path: Path, env: dict[str, str], args: list[str], message: str
) -> None:
    os.environ.update(env)
    res = runner.invoke(app, ["serve", "--db", f"sqlite:///{tmp_path / 'lab.db'}", *args])
    assert res.exit_code == 2 and " ".join(res.output.split()).startswith(message), res.output
    assert "target" not in started and HANDOVER not in os.environ
