"""Write what a user sees of fairshare's outputs into a folder, so two versions can be compared byte for byte.

A refactor (issue 14: the package layout) must not change behaviour.  Run this before and after and
diff the folders:

    .venv/bin/python bench/behaviour_snapshot.py /tmp/before
    ... change the code ...
    .venv/bin/python bench/behaviour_snapshot.py /tmp/after
    diff -r /tmp/before /tmp/after        # nothing but the operations you meant to add

It writes `allocate --json` of every file in examples/, `fairshare schema`, the service's
`/openapi.json` and the Kueue manifests of the README's example.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAIRSHARE = [sys.executable, "-m", "fairshare.cli"]


def _run(*args: str) -> str:
    return subprocess.run([*FAIRSHARE, *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def snapshot(out: Path) -> list[Path]:
    """Every output file written, in order."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        target = out / f"allocate-{example.stem}.json"
        result = json.loads(_run("allocate", str(example), "--json"))
        result["stats"]["solve_seconds"] = "timed"  # the one field that differs from run to run
        target.write_text(json.dumps(result, indent=2) + "\n")
        written.append(target)
    schema = out / "schema.json"
    schema.write_text(_run("schema"))
    written.append(schema)
    with tempfile.TemporaryDirectory() as tmp:
        openapi = subprocess.run(
            [
                sys.executable,
                "-c",
                "import json, sys\n"
                "from fairshare.store.db import make_engine, upgrade\n"
                "try:\n    from fairshare.service.api.app import create_app\n"
                "except ImportError:\n    from fairshare.service.api.app import create_app\n"
                f"eng = make_engine('sqlite:///{tmp}/s.db')\nupgrade(eng)\n"
                "app = create_app(engine=eng, secret='x' * 32, sync_hooks=[])\n"
                "sys.stdout.write(json.dumps(app.openapi(), indent=2, sort_keys=True))\n",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    target = out / "openapi.json"
    target.write_text(openapi)
    written.append(target)
    kueue_dir = out / "kueue"
    _run("sync", "kueue", str(ROOT / "examples" / "meta-ai-2023.yaml"), "--out", str(kueue_dir))
    written.extend(sorted(kueue_dir.iterdir()))
    return written


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: behaviour_snapshot.py OUT_DIR")
    for path in snapshot(Path(sys.argv[1])):
        data = path.read_bytes()
        print(f"{len(data):>9,} bytes  {path}")
    json.loads((Path(sys.argv[1]) / "openapi.json").read_text())  # a readable spec, not an error page


if __name__ == "__main__":
    main()
