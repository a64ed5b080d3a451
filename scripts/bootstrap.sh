#!/usr/bin/env bash
# Prepare a fresh machine: PostgreSQL and Redis up, and .venv with the project and its dev tools.
# Reinstalls only when pyproject.toml changed. Used by scripts/test.sh, scripts/run.sh and CI.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "${PYTHON}" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -f "${stamp}" ]]; then
    .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING' || true
    .venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v '^WARNING' || true
    .venv/bin/python -c "import flask, rq, gevent, psycopg2, pytest, yaml" # the install worked
    rm -f .venv/.installed-* && touch "${stamp}"
fi
