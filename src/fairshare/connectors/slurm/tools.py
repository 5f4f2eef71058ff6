"""Running Slurm's command-line tools (`sacctmgr`, `sacct`), and the errors that say what to check.

Slurm is driven through its tools: pyslurm does not support the Slurm 22.05 that Debian ships,
and the tools are what an admin would type anyway.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence

from fairshare.errors import Unavailable


class SlurmError(Unavailable):
    """Slurm could not do what was asked; the message says what to check."""


class SlurmMissing(SlurmError):
    """The Slurm command-line tools are not installed (or not on PATH)."""


class SlurmUnreachable(SlurmError):
    """The tools run, but slurmdbd (or slurmctld) does not answer."""


class SlurmCommandFailed(SlurmError):
    """A command ran and Slurm refused it."""

    def __init__(self, argv: Sequence[str], code: int, output: str) -> None:
        self.argv, self.code, self.output = list(argv), code, output
        super().__init__(f"`{shlex.join(argv)}` failed (exit {code}): {output.strip() or 'no message'}")


# --- running commands ------------------------------------------------------------------------

_UNREACHABLE = re.compile(
    r"connection refused|persistent connection|problem talking to the database|unable to contact slurm controller|"
    r"socket timed out|zero bytes were transmitted|unable to connect|connect failure|munge",
    re.I,
)


class Runner:
    """Runs Slurm's tools: a timeout on each, exit code and stderr checked, errors that say what to do.

    `log` (if given) sees every command line before it runs."""

    def __init__(
        self,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        log: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.timeout = timeout
        self.env = dict(os.environ if env is None else env)
        self.log = log

    def __call__(self, argv: Sequence[str], *, benign: Iterable[str] = (), env: Mapping[str, str] | None = None) -> str:
        """Run `argv` and return its stdout.  `benign`: stdout messages that make a non-zero exit
        a success; `env`: variables to add for this command."""
        argv = list(argv)
        if self.log:
            self.log(argv)
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError as e:
            raise SlurmMissing(
                f"{argv[0]} is not installed or not on PATH: install Slurm's client tools "
                "(Debian: apt install slurm-client) on this machine, or run fairshare where they "
                "are"
            ) from e
        except subprocess.TimeoutExpired as e:
            raise SlurmUnreachable(
                f"`{shlex.join(argv)}` did not finish within {self.timeout:g} s: is slurmdbd "
                "running and reachable from here (AccountingStorageHost in slurm.conf)?"
            ) from e
        text = (proc.stderr + "\n" + proc.stdout).strip()
        if proc.returncode != 0:
            if "configuration source" in text or "fetch_config" in text:
                raise SlurmUnreachable(
                    f"{argv[0]} finds no slurm.conf for this cluster: set SLURM_CONF to its path "
                    "(or install it as /etc/slurm/slurm.conf)"
                )
            if _UNREACHABLE.search(text):
                first = next((ln for ln in text.splitlines() if ln.strip()), text)
                raise SlurmUnreachable(
                    f"cannot reach Slurm's accounting daemon (slurmdbd): {first.strip()}. "
                    "Check that slurmdbd and munged are running and that SLURM_CONF names "
                    "this cluster's slurm.conf"
                )
            if any(msg in proc.stdout for msg in benign):
                return proc.stdout
            raise SlurmCommandFailed(argv, proc.returncode, text)
        if re.search(r"\berror:", proc.stderr):
            raise SlurmCommandFailed(argv, proc.returncode, proc.stderr)
        return proc.stdout


def split_rows(output: str) -> list[list[str]]:
    return [ln.split("|") for ln in output.splitlines() if ln.strip()]
