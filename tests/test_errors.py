"""The error tree: every error fairshare raises on purpose is a FairshareError, so the CLI and the
API map it to an exit code and an HTTP status by class."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

import fairshare
from fairshare import errors


def _modules() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.walk_packages(fairshare.__path__, "fairshare.")
        if not m.name.startswith("fairshare.store.migrations") and not m.name.endswith("__main__")
    )


@pytest.mark.parametrize("module", _modules())
def test_every_exception_fairshare_defines_derives_from_fairshare_error(module: str) -> None:
    mod = importlib.import_module(module)
    mine = [
        cls
        for _, cls in inspect.getmembers(mod, inspect.isclass)
        if cls.__module__ == module and issubclass(cls, BaseException)
    ]
    assert all(issubclass(cls, errors.FairshareError) for cls in mine), [c.__name__ for c in mine]


@pytest.mark.parametrize(
    "cls, exit_code, status",
    [
        (errors.UserError, 2, 422),
        (errors.NotFound, 2, 404),
        (errors.Forbidden, 2, 403),
        (errors.Conflict, 2, 409),
        (errors.InfeasibleGuarantees, 2, 409),
        (errors.Unavailable, 1, 503),
        (errors.InternalError, 1, 500),
        (errors.SolverError, 1, 503),
    ],
)
def test_each_branch_of_the_tree_has_its_exit_code_and_http_status(
    cls: type[errors.FairshareError], exit_code: int, status: int
) -> None:
    assert (cls.exit_code, cls.http_status) == (exit_code, status)


def test_importing_the_error_tree_loads_nothing_beyond_the_standard_library() -> None:
    code = (
        "import sys; before = set(sys.modules); import fairshare.errors; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(ast.literal_eval(out)) - {"fairshare"}
    assert loaded <= sys.stdlib_module_names, loaded - sys.stdlib_module_names
