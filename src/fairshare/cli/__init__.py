"""The `fairshare` command line: one module per command group, rendering and error reporting private.

`main` holds the root app and the scenario commands (allocate, validate, explain, diff, schema);
`store`, `rounds`, `slurm`, `kueue` and `simulate` register their groups on it.
"""

from fairshare.cli.main import app

__all__ = ["app"]
