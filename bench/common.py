"""Shared by the benchmarks: which engine code was measured, and on what machine."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "src" / "fairshare" / "engine"


def engine_fingerprint() -> dict:
    """sha256 (first 12 hex digits) of the engine's source files and their newest mtime, so a
    result can be matched to the code it measured (the engine changes between commits)."""
    h = hashlib.sha256()
    newest = 0.0
    for path in sorted(ENGINE.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
    return {
        "engine_sha256": h.hexdigest()[:12],
        "engine_newest_mtime": dt.datetime.fromtimestamp(newest, dt.UTC).isoformat(timespec="seconds"),
    }


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
