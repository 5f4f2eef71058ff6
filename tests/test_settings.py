"""The service's configuration: one typed Settings object from FAIRSHARE_* variables, the same names
and defaults as before it existed, bad values named, and handed to workers in one variable."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from fairshare.errors import UserError
from fairshare.settings import HANDOVER, Settings, SettingsError, hand_over, handed_over, load_settings, variable

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's environment without FAIRSHARE_* variables (restored after the test)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FAIRSHARE_")}
    monkeypatch.setattr(os, "environ", clean)
    return clean


def test_defaults_are_those_the_modules_used_before() -> None:
    s = load_settings({})
    assert s.database_url == "sqlite:///./fairshare.db"
    assert s.secret_key is None
    assert s.token_cache_seconds == 5
    assert s.sync_on_publish == ()
    assert (s.slurm_cluster, s.slurm_prefix, s.slurm_gres_map, s.kueue_out) == (None, "fs-", None, None)


def test_reads_the_process_environment(environ: dict[str, str]) -> None:
    environ.update(
        {
            "FAIRSHARE_DATABASE_URL": "postgresql://db/lab",
            "FAIRSHARE_TOKEN_CACHE_SECONDS": "0.5",
            "FAIRSHARE_SYNC_ON_PUBLISH": "slurm, kueue",
            "FAIRSHARE_KUEUE_OUT": "/srv/kueue",
            "FAIRSHARE_SECRET_KEY": "s3cret",
        }
    )
    s = load_settings()
    assert s.database_url == "postgresql://db/lab" and s.token_cache_seconds == 0.5
    assert s.sync_on_publish == ("slurm", "kueue") and s.kueue_out == Path("/srv/kueue")
    assert s.secret_key == "s3cret" and "s3cret" not in repr(s)


def test_an_empty_variable_counts_as_unset(environ: dict[str, str]) -> None:
    environ.update({variable(name): "" for name in Settings.model_fields})
    assert load_settings() == load_settings({})


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"FAIRSHARE_TOKEN_CACHE_SECONDS": "soon"},
            "FAIRSHARE_TOKEN_CACHE_SECONDS: Input should be a valid number, unable to parse string as a number "
            "(got 'soon')",
        ),
        (
            {"FAIRSHARE_TOKEN_CACHE_SECONDS": "-1"},
            "FAIRSHARE_TOKEN_CACHE_SECONDS: Input should be greater than or equal to 0",
        ),
        ({"FAIRSHARE_TOKEN_CACHE_SECONDS": "nan"}, "FAIRSHARE_TOKEN_CACHE_SECONDS: Input should be a finite number"),
        (
            {"FAIRSHARE_SYNC_ON_PUBLISH": "slurm,lsf"},
            "FAIRSHARE_SYNC_ON_PUBLISH: unknown sync target 'lsf'; use slurm or kueue (got 'slurm,lsf')",
        ),
    ],
)
def test_a_bad_value_is_a_user_error_naming_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value).startswith(message), caught.value
    assert isinstance(caught.value, UserError) and caught.value.exit_code == 2


def test_several_bad_values_are_all_named() -> None:
    with pytest.raises(SettingsError, match="FAIRSHARE_TOKEN_CACHE_SECONDS: .*; FAIRSHARE_SYNC_ON_PUBLISH: "):
        load_settings({"FAIRSHARE_TOKEN_CACHE_SECONDS": "x", "FAIRSHARE_SYNC_ON_PUBLISH": "x"})


def test_given_values_win_and_are_named_by_their_label(environ: dict[str, str]) -> None:
    environ.update({"FAIRSHARE_SYNC_ON_PUBLISH": "slurm", "FAIRSHARE_SLURM_PREFIX": "acct-"})
    s = load_settings(sync_on_publish=["kueue"])
    assert s.sync_on_publish == ("kueue",) and s.slurm_prefix == "acct-"
    with pytest.raises(SettingsError, match=r"^--sync: unknown sync target 'lsf'"):
        load_settings(labels={"sync_on_publish": "--sync"}, sync_on_publish=["lsf"])
    environ["FAIRSHARE_SYNC_ON_PUBLISH"] = "lsf"  # not given: named by its variable, whatever the labels
    with pytest.raises(SettingsError, match=r"^FAIRSHARE_SYNC_ON_PUBLISH: unknown sync target 'lsf'"):
        load_settings(labels={"sync_on_publish": "--sync"})


def test_a_worker_gets_the_settings_in_one_variable_and_never_rereads_the_others(environ: dict[str, str]) -> None:
    environ["FAIRSHARE_SECRET_KEY"] = "s3cret"
    settings = load_settings(sync_on_publish=["kueue"], kueue_out=Path("/srv/kueue"))
    before = set(environ)
    hand_over(settings)
    assert set(environ) - before == {HANDOVER}
    environ["FAIRSHARE_TOKEN_CACHE_SECONDS"] = "not read by a worker"
    assert handed_over() == settings and handed_over().secret_key == "s3cret"


def test_outside_serve_a_worker_reads_the_environment(environ: dict[str, str]) -> None:
    environ["FAIRSHARE_TOKEN_CACHE_SECONDS"] = "7"
    assert handed_over().token_cache_seconds == 7


def test_the_app_takes_its_settings_as_a_parameter(tmp_path: Path) -> None:
    from fairshare.service.api.app import create_app
    from fairshare.service.api.deps import actor_cache
    from fairshare.store.db import make_engine

    settings = load_settings(
        {
            "FAIRSHARE_SYNC_ON_PUBLISH": "kueue",
            "FAIRSHARE_KUEUE_OUT": str(tmp_path),
            "FAIRSHARE_TOKEN_CACHE_SECONDS": "0",
        }
    )
    app = create_app(engine=make_engine("sqlite://"), check=False, web=False, settings=settings)
    assert app.state.settings is settings
    assert [name for name, _ in app.state.sync_hooks] == ["kueue"]
    assert actor_cache(SimpleNamespace(app=app)).ttl == 0  # type: ignore[arg-type]


def test_serve_app_builds_the_app_on_the_settings_handed_over(tmp_path: Path) -> None:
    """In a fresh process, as a uvicorn worker: a bad variable beside the handed-over settings is not read."""
    settings = load_settings(
        {
            "FAIRSHARE_SYNC_ON_PUBLISH": "kueue",
            "FAIRSHARE_KUEUE_OUT": str(tmp_path),
            "FAIRSHARE_TOKEN_CACHE_SECONDS": "2",
            "FAIRSHARE_SECRET_KEY": "k" * 32,
            "FAIRSHARE_DATABASE_URL": f"sqlite:///{tmp_path / 'lab.db'}",
        }
    )
    code = (
        "import json\n"
        "from fairshare.store.db import make_engine, upgrade\n"
        "from fairshare.service.api.app import serve_app\n"
        "from fairshare.settings import handed_over\n"
        "upgrade(make_engine(handed_over().database_url))\n"
        "app = serve_app()\n"
        "print(json.dumps({'hooks': [n for n, _ in app.state.sync_hooks],"
        " 'ttl': app.state.settings.token_cache_seconds,"
        " 'key': app.state.web_sessions.key, 'db': str(app.state.engine.url)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRSHARE_")}
    env.update({HANDOVER: settings.model_dump_json(), "FAIRSHARE_TOKEN_CACHE_SECONDS": "bad"})
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {
        "hooks": ["kueue"],
        "ttl": 2,
        "key": "k" * 32,
        "db": f"sqlite:///{tmp_path / 'lab.db'}",
    }


def test_every_setting_is_in_the_table_of_docs_service_md() -> None:
    text = (ROOT / "docs" / "service.md").read_text()
    rows = dict(re.findall(r"^\| `(FAIRSHARE_[A-Z_]+)` \| ([^|]+) \|", text, re.M))
    assert set(rows) == {variable(name) for name in Settings.model_fields}
    for name, field in Settings.model_fields.items():
        if isinstance(field.default, str):  # a literal default is written as it is
            assert rows[variable(name)].strip() == f"`{field.default}`", name
