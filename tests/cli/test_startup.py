"""The command line starts fast: `fairshare --help` and `fairshare allocate` import neither the
store, the service, nor a connector's client library, and the errors of the modules they skip
are still reported as one line with exit code 2 when a command does load them.

Each case runs in a fresh interpreter: in this one the other tests have imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.cli.test_cli import GOOD

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "meta-ai-2023.yaml"
HEAVY = {
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "httpx",
    "kubernetes",
    "jsonschema",
    "pydantic_settings",
    "celpy",
    "matplotlib",
    "plotly",
    "ray",
}
ENGINE = {"numpy", "scipy", "highspy"}

# runs the CLI as the `fairshare` script does, then prints the top-level packages it imported
RUN_CLI = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr))\n"
    "from fairshare.cli import app\n"
    "app()\n"
)


def fairshare(*args: str | Path, cwd: Path = ROOT) -> tuple[int, str, set[str]]:
    """Exit code, stderr without its last line, and the packages imported by `fairshare ARGS`."""
    proc = subprocess.run(
        [sys.executable, "-c", RUN_CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    *err, imported = proc.stderr.rstrip("\n").split("\n")
    return proc.returncode, "\n".join(err), set(json.loads(imported))


def test_importing_the_cli_loads_no_store_service_connector_client_or_engine() -> None:
    code = "import sys, json, fairshare.cli; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    imported = set(json.loads(proc.stdout))
    assert not imported & (HEAVY | ENGINE), sorted(imported & (HEAVY | ENGINE))


def test_help_lists_every_command_without_loading_them() -> None:
    code, _, imported = fairshare("--help")
    assert code == 0
    assert not imported & (HEAVY | ENGINE), sorted(imported & (HEAVY | ENGINE))


def test_allocate_loads_the_engine_and_nothing_of_the_service() -> None:
    code, err, imported = fairshare("allocate", EXAMPLE, "--json")
    assert code == 0, err
    assert "highspy" in imported
    assert not imported & HEAVY, sorted(imported & HEAVY)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite database holding the example, its requests in round 1, which is open (and beside
    it a file that is not a database)."""
    where = tmp_path_factory.mktemp("lab")
    (where / "not-a-database.db").write_text("fairshare\n")
    db = f"sqlite:///{where / 'lab.db'}"
    code, err, _ = fairshare("import", EXAMPLE, "--round", "2023-03", "--db", db)
    assert code == 0, err
    return db


@pytest.mark.parametrize(
    "args, message",
    [
        (["allocate", "no-such-file.yaml"], "error: no-such-file.yaml is not a valid scenario:"),  # the loader's
        (["export", "--round", "9", "--db", "{lab}"], "error: no round with id 9"),  # the store's
        (["sync", "kueue", "--round", "9", "--db", "{lab}"], "error: no round with id 9"),
        (
            ["sync", "slurm", "--round", "1", "--db", "{lab}"],  # the connectors'
            "error: round 1 (2023-03) is open; only a published or final round is enforced",
        ),
        (["export", "--db", "{broken}"], "error: cannot connect to sqlite:///"),  # the database's
        (["db", "current", "--db", "{broken}"], "error: cannot connect to sqlite:///"),
        (["db", "upgrade", "--db", "{broken}"], "error: cannot connect to sqlite:///"),
    ],
)
def test_errors_of_modules_loaded_on_demand_are_one_message_with_exit_2(
    lab: str, args: list[str], message: str
) -> None:
    broken = lab.replace("lab.db", "not-a-database.db")
    code, err, _ = fairshare(*(a.format(lab=lab, broken=broken) for a in args))
    assert code == 2, err
    assert err.startswith(message) and "Traceback" not in err, err


def test_infeasible_guarantees_exit_2(tmp_path: Path) -> None:
    text = GOOD.replace(
        "    - name: t1\n    - name: t2\n", "    - {name: t1, guarantee: {A: 6}}\n    - {name: t2, guarantee: {A: 6}}\n"
    )
    (tmp_path / "infeasible.yaml").write_text(text.replace("gpus: 4}", "gpus: 40}"))
    code, err, _ = fairshare("allocate", tmp_path / "infeasible.yaml")
    assert code == 2 and "infeasible guarantees" in err and "Traceback" not in err, err
