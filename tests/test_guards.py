"""The layers of docs/architecture.md, checked: lint, format, types and import contracts run as part
of the test suite, so the README's one test command (and CI) runs them."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "fairshare"
BIN = Path(sys.executable).parent


def _tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert exe, f"{name} is not installed: run scripts/setup.sh"
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "args", [("check", "src", "tests", "bench"), ("format", "--check", "src", "tests", "bench")], ids=["lint", "format"]
)
def test_ruff_is_clean(args: tuple[str, ...]) -> None:
    proc = _tool("ruff", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_is_clean_on_src() -> None:
    proc = _tool("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_import_contracts_hold() -> None:
    proc = _tool("lint-imports")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every fairshare module imported by `path`, resolving `from x import y` to x.y."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return [(line, name) for line, name in found if name.startswith("fairshare.")]


def test_nothing_imports_a_private_module_of_another_package() -> None:
    """`fairshare.engine._group` is the engine's own: only modules inside fairshare.engine import it."""
    wrong = []
    for path in SRC.rglob("*.py"):
        here = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        for line, name in _imports(path):
            parts = name.split(".")
            for i, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__") and i > 0:
                    owner = ".".join(parts[:i])
                    if not (here == owner or here.startswith(owner + ".")):
                        wrong.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not wrong, "\n".join(wrong)
