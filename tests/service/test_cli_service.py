"""The command line on a real server: `fairshare serve` in a subprocess, the client commands
against it, and the local database commands (db upgrade, import, export, token create)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from tests.service.conftest import SMALL_LAB
from typer.testing import CliRunner

from fairshare.cli import app

runner = CliRunner()


def fs(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), env=env)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A migrated SQLite lab with two people, served by `fairshare serve` on a free port
    (one server for the module: starting one takes seconds)."""
    tmp_path = tmp_path_factory.mktemp("served")
    db = f"sqlite:///{tmp_path / 'lab.db'}"
    env = {"FAIRSHARE_DATABASE_URL": db}
    (tmp_path / "lab.yaml").write_text(SMALL_LAB)
    assert fs("db", "upgrade", env=env)[0] == 0
    code, out, err = fs("import", str(tmp_path / "lab.yaml"), env=env)
    assert code == 0, err
    assert "2 pools, 6 org nodes" in out
    tokens = {}
    for who, role, node in (("chair", "committee", "lab"), ("llama-lead", "lead", "llama")):
        code, out, err = fs("token", "create", "--member", who, "--role", role, "--node", node, env=env)
        assert code == 0, err
        tokens[who] = out.strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fairshare.cli", "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("fairshare serve did not come up: " + proc.stdout.read().decode() if proc.stdout else "")
        yield {"FAIRSHARE_URL": url, "CHAIR": tokens["chair"], "LEAD": tokens["llama-lead"], **env}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_round_driven_from_the_command_line(server: dict[str, str], tmp_path: Path) -> None:
    chair = {**server, "FAIRSHARE_TOKEN": server["CHAIR"]}
    lead = {**server, "FAIRSHARE_TOKEN": server["LEAD"]}
    code, out, err = fs("round", "create", "2026-12", env=chair)
    assert code == 0 and "round 1 2026-12: draft; next: open" in out, err
    assert fs("round", "open", "1", env=chair)[0] == 0
    (tmp_path / "asks.yaml").write_text(
        yaml.safe_dump(
            {
                "requests": [
                    {"id": "llama-5", "team": "llama", "gpus": 300, "justification": "frontier run"},
                    {"id": "llama-eval", "team": "llama", "gpus": 8},
                ]
            }
        )
    )
    code, out, err = fs("request", "submit", str(tmp_path / "asks.yaml"), "--round", "1", env=lead)
    assert code == 0, err
    assert "submitted llama-5" in out and "submitted llama-eval" in out
    for step in ("close", "propose", "publish"):
        code, out, err = fs("round", step, "1", env=chair)
        assert code == 0, err
    code, out, err = fs("round", "show", "1", "--json", env=lead)
    assert code == 0, err
    alloc = {a["request"]: a["total"] for a in yaml.safe_load(out)["allocation"]}
    assert alloc == {"llama-eval": 8, "llama-5": 192 - 8}  # alone in the lab: everything it can use
    code, out, err = fs("round", "entitlement", "1", "llama", env=lead)
    assert code == 0 and out.startswith("llama gets 192 GPUs"), err
    code, out, err = fs(
        "appeal",
        "file",
        "--round",
        "1",
        "--request",
        "llama-5",
        "--asked",
        "300",
        "--reason",
        "we need it all",
        env=lead,
    )
    assert code == 0 and "with the committee of research" in out, err


def test_client_errors_are_one_line_with_exit_code_2(server: dict[str, str]) -> None:
    lead = {**server, "FAIRSHARE_TOKEN": server["LEAD"]}
    code, out, err = fs("round", "create", "x", env=lead)  # a lead cannot run rounds
    assert code == 2 and "403" in err and "committee" in err and "Traceback" not in err
    code, _, err = fs("round", "open", "99", env={**server, "FAIRSHARE_TOKEN": server["CHAIR"]})
    assert code == 2 and "no round with id 99" in err
    code, _, err = fs("round", "list", env={**server, "FAIRSHARE_TOKEN": "wrong"})
    assert code == 2 and "401" in err
    code, _, err = fs("round", "list", env={**server, "FAIRSHARE_TOKEN": ""})
    assert code == 2 and "FAIRSHARE_TOKEN" in err


def test_unreachable_server_is_reported_with_what_to_do() -> None:
    code, _, err = fs("round", "list", "--url", "http://127.0.0.1:9", "--token", "t", env={})
    assert code == 1 and "cannot reach the fairshare server" in err and "fairshare serve" in err


def test_bad_request_file_names_the_request_and_field(tmp_path: Path, server: dict[str, str]) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump([{"id": "a", "team": "llama", "gpus": -3}]))
    code, _, err = fs(
        "request",
        "submit",
        str(tmp_path / "bad.yaml"),
        "--round",
        "1",
        env={**server, "FAIRSHARE_TOKEN": server["LEAD"]},
    )
    assert code == 2 and "request 1 (a)" in err and "gpus" in err


@pytest.mark.parametrize(
    "content, expected",
    [
        ("- {id: a, team: llama, gpus: 3, launch: 2023-13-45}\n", "bad.yaml:1: '2023-13-45' is not a valid date"),
        ("- {id: a, team: llama, gpus: 3\n", "bad.yaml:2: invalid YAML"),
        (None, "cannot read the file"),
    ],
)
def test_an_unreadable_request_file_is_one_line_with_exit_code_2(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    """Read before anything is sent, so no server is needed; a directory stands for a file that cannot be read."""
    path = tmp_path / "bad.yaml"
    path.write_text(content) if content is not None else path.mkdir()
    code, _, err = fs(
        "request", "submit", str(path), "--round", "1", "--url", "http://127.0.0.1:9", "--token", "t", env={}
    )
    assert code == 2 and expected in " ".join(err.split()) and "Traceback" not in err


@pytest.mark.parametrize("url", ["notaurl", "mysql://x@localhost/lab"])
def test_a_database_url_fairshare_cannot_use_is_one_line_with_exit_code_2(url: str) -> None:
    code, _, err = fs("db", "current", "--db", url, env={})
    assert code == 2 and "is not a database fairshare can use" in " ".join(err.split()) and "Traceback" not in err


@pytest.mark.parametrize("member", ["", " ", "a b", "-lead"])
def test_a_token_for_a_member_name_the_api_would_refuse_is_refused(tmp_path: Path, member: str) -> None:
    env = {"FAIRSHARE_DATABASE_URL": f"sqlite:///{tmp_path / 'lab.db'}"}
    code, out, err = fs("token", "create", "--member", member, "--role", "admin", env=env)
    assert code == 2 and "a member name is letters, digits" in " ".join(err.split()) and not out.strip()


def test_export_round_trips_through_allocate(tmp_path: Path) -> None:
    env = {"FAIRSHARE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    example = Path(__file__).parents[2] / "examples" / "meta-ai-2023.yaml"
    code, _, err = fs("import", str(example), "--round", "2023-03", env=env)  # SQLite: migrated on the spot
    assert code == 0, err
    code, out, err = fs("export", "--round", "1", env=env)
    assert code == 0, err
    (tmp_path / "again.yaml").write_text(out)
    direct = runner.invoke(app, ["allocate", str(example), "--json"]).stdout
    again = runner.invoke(app, ["allocate", str(tmp_path / "again.yaml"), "--json"]).stdout
    strip = lambda s: {k: v for k, v in yaml.safe_load(s).items() if k not in ("scenario", "stats")}  # noqa: E731
    assert strip(direct) == strip(again)


def test_token_for_an_unknown_node_is_refused(tmp_path: Path) -> None:
    env = {"FAIRSHARE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    (tmp_path / "lab.yaml").write_text(SMALL_LAB)
    fs("import", str(tmp_path / "lab.yaml"), env=env)
    code, _, err = fs("token", "create", "--member", "x", "--role", "lead", "--node", "nope", env=env)
    assert code == 2 and "no org node named 'nope'" in err


def test_postgres_url_that_is_not_migrated_says_run_db_upgrade() -> None:
    url = os.environ.get("FAIRSHARE_TEST_DATABASE_URL")
    if not url:
        pytest.skip("needs FAIRSHARE_TEST_DATABASE_URL")
    code, _, err = fs("export", env={"FAIRSHARE_DATABASE_URL": url + "?options=-csearch_path%3Dno_such_schema"})
    assert code == 2 and "fairshare db upgrade" in err


def test_serve_refuses_an_unknown_sync_target(tmp_path: Path) -> None:
    code, _, err = fs("serve", "--sync", "lsf", env={"FAIRSHARE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert code == 2 and "unknown sync target 'lsf'" in err


def test_dry_runs_of_an_override_its_removal_and_a_re_propose_show_the_change_and_save_nothing(
    server: dict[str, str], tmp_path: Path
) -> None:
    chair = {**server, "FAIRSHARE_TOKEN": server["CHAIR"]}
    lead = {**server, "FAIRSHARE_TOKEN": server["LEAD"]}
    code, out, err = fs("round", "create", "preview", "--json", env=chair)
    assert code == 0, err
    rid = str(json.loads(out)["id"])
    assert fs("round", "open", rid, env=chair)[0] == 0
    asks = {"requests": [{"id": "big", "team": "llama", "gpus": 300}, {"id": "small", "team": "llama", "gpus": 300}]}
    (tmp_path / "asks.yaml").write_text(yaml.safe_dump(asks))
    assert fs("request", "submit", str(tmp_path / "asks.yaml"), "--round", rid, env=lead)[0] == 0
    for step in ("close", "propose"):
        assert fs("round", step, rid, env=chair)[0] == 0

    def shown() -> dict[str, int]:
        code, out, err = fs("round", "show", rid, "--json", env=chair)
        assert code == 0, err
        return {a["request"]: a["total"] for a in yaml.safe_load(out)["allocation"]}

    before = shown()
    pin = ("round", "override", rid, "--request", "small", "--gpus", "10", "--reason", "paused")
    code, out, err = fs(*pin, "--dry-run", env=chair)
    assert code == 0 and "nothing saved" in out and "small" in out and "big" in out, err
    code, out, err = fs(*pin, "--dry-run", "--json", env=chair)
    moved = {c["name"]: c["gpus_delta"] for c in json.loads(out)["changes"] if c["kind"] == "request"}
    assert moved == {"small": 10 - before["small"], "big": before["small"] - 10}  # the team absorbs it
    assert shown() == before
    code, out, err = fs(*pin, "--json", env=chair)
    assert code == 0, err
    oid = str(json.loads(out)["id"])
    assert shown() == {"small": 10, "big": before["big"] + before["small"] - 10}
    code, out, err = fs("round", "override-remove", rid, oid, "--dry-run", env=chair)
    assert code == 0 and "nothing saved" in out, err
    code, out, err = fs("round", "propose", rid, "--dry-run", env=chair)
    assert code == 0 and "nothing would move" in out, err
    assert shown()["small"] == 10
    assert fs("round", "override-remove", rid, oid, env=chair)[0] == 0
    assert shown() == before
    code, out, err = fs("round", "override-remove", rid, oid, "--dry-run", env=chair)
    assert code == 2 and f"no active override {oid}" in err
