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
    # pip's own output only when it fails (its warnings are noise on every fresh clone).
    if ! {
        .venv/bin/python -m pip install -q --upgrade pip &&
            .venv/bin/python -m pip install -q -e '.[dev]'
    } >.venv/install.log 2>&1; then
        cat .venv/install.log >&2
        echo "bootstrap: installing the project into .venv failed (pip's output above)" >&2
        exit 1
    fi
    rm -f .venv/.installed-* && touch "${stamp}"
fi
