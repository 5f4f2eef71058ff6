#!/usr/bin/env bash
# Idempotent developer setup: a .venv in the repo root with fairshare installed editable, with every
# optional extra (service, kueue, simulate, ray: see pyproject.toml) and the dev one (tests and
# guards).  Safe to run on every test or CLI call.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PYTHON" --version 2>&1)" >&2
    "$PYTHON" -m venv .venv
fi

# Reinstall only when the project metadata changed since the last successful install.
stamp=.venv/.fairshare-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
    || ! .venv/bin/python -c "import fairshare" >/dev/null 2>&1; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[all,dev]'
    touch "$stamp"
fi
