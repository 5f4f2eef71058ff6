"""Optional extras: `pip install fairshare` runs the engine's commands; a command that needs an extra
that is not installed says which one, in one line with exit code 2, instead of an ImportError.

A missing package is simulated the only honest way here: a fresh interpreter whose import system
refuses it (a sys.meta_path finder), as an interpreter without the package would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from fairshare.cli._kit import EXTRAS, friendly, need
from fairshare.errors import MissingExtra

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "meta-ai-2023.yaml")
TRACE = str(ROOT / "tests" / "simulate" / "data")
EVERY_EXTRA = ",".join(sorted({p for packages in EXTRAS.values() for p in packages}))

# `fairshare ARGS` with the packages named in argv[1] (comma-separated) missing
WITHOUT = (
    "import sys\n"
    "from importlib.abc import MetaPathFinder\n"
    "blocked = set(sys.argv[1].split(','))\n"
    "class NotInstalled(MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in blocked:\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, NotInstalled())\n"
    "sys.argv = ['fairshare', *sys.argv[2:]]\n"
    "from fairshare.cli import app\n"
    "app()\n"
)


def without(packages: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, packages, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_the_base_install_allocates_and_lists_every_command() -> None:
    proc = without(EVERY_EXTRA, "allocate", EXAMPLE, "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"requests"' in proc.stdout
    proc = without(EVERY_EXTRA, "--help")
    assert proc.returncode == 0 and "serve" in proc.stdout and "sync" in proc.stdout, proc.stderr


@pytest.mark.parametrize(
    "missing, args, message",
    [
        ("sqlalchemy", ["serve"], "`fairshare serve` needs the service extra: pip install 'fairshare[service]'"),
        ("uvicorn", ["serve"], "`fairshare serve` needs the service extra: pip install 'fairshare[service]'"),
        ("sqlalchemy", ["export"], "`fairshare export` needs the service extra: pip install 'fairshare[service]'"),
        ("alembic", ["db", "upgrade"], "`fairshare db upgrade` needs the service extra"),
        ("sqlalchemy", ["import", EXAMPLE], "`fairshare import` needs the service extra"),
        ("sqlalchemy", ["sync", "slurm", EXAMPLE], "`fairshare sync slurm` needs the service extra"),
        (
            "kubernetes",
            ["sync", "kueue", EXAMPLE],
            "`fairshare sync kueue` needs the kueue extra: pip install 'fairshare[kueue]'",
        ),
        (
            "kubernetes,sqlalchemy",
            ["sync", "kueue", EXAMPLE],
            "`fairshare sync kueue` needs the kueue and service extras: pip install 'fairshare[kueue,service]'",
        ),
        (
            "matplotlib",
            ["simulate", TRACE, "-c", "8:8:8", "-o", "{tmp}"],
            "`fairshare simulate` needs the simulate extra: pip install 'fairshare[simulate]'",
        ),
        (
            "ray",
            ["sweep", TRACE, "-p", "fifo", "-c", "8:8:8", "-o", "{tmp}", "--ray"],
            "`fairshare sweep --ray` needs the ray extra: pip install 'fairshare[ray]'",
        ),
    ],
)
def test_a_command_without_its_extra_names_the_extra_to_install(
    tmp_path: Path, missing: str, args: list[str], message: str
) -> None:
    proc = without(missing, *(a.format(tmp=tmp_path / "out") for a in args), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {message}") and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "fairshare.db").exists()  # refused before it began


def test_help_of_a_command_needs_no_extra() -> None:
    proc = without(EVERY_EXTRA, "serve", "--help")
    assert proc.returncode == 0 and "--workers" in proc.stdout, proc.stderr


def test_need_passes_when_the_extras_are_installed() -> None:
    need(*EXTRAS, command="fairshare anything")  # this environment has every extra (scripts/setup.sh)


def test_need_names_only_the_extras_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what import sees for a package that is gone
    with pytest.raises(MissingExtra) as caught:
        need("service", "simulate", command="fairshare simulate")
    assert caught.value.extras == ("simulate",) and caught.value.exit_code == 2


def test_an_unforeseen_import_of_an_extra_is_reported_as_the_missing_extra(capsys: pytest.CaptureFixture[str]) -> None:
    @friendly
    def command() -> None:
        raise ModuleNotFoundError("No module named 'kubernetes.client'", name="kubernetes.client")

    with pytest.raises(typer.Exit) as caught:
        command()
    assert caught.value.exit_code == 2
    assert capsys.readouterr().err == "error: this command needs the kueue extra: pip install 'fairshare[kueue]'\n"


def test_a_missing_module_of_no_extra_is_a_bug_and_not_hidden() -> None:
    @friendly
    def command() -> None:
        raise ModuleNotFoundError("No module named 'fairshare.nowhere'", name="fairshare.nowhere")

    with pytest.raises(ModuleNotFoundError):
        command()
