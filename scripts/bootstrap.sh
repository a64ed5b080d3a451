#!/usr/bin/env bash
# Prepare a fresh machine: PostgreSQL and Redis up, and .venv with the project and its dev tools.
# Every dependency comes from the hash-locked requirements/dev.txt (`make lock`): pip checks each
# file against its sha256 and installs nothing unpinned; then the project itself, editable, with
# no dependencies and the locked build backend (no build isolation: nothing fetched unchecked).
# Reinstalls only when pyproject.toml or a lock changed. Used by scripts/test.sh, scripts/run.sh
# and CI.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "${PYTHON}" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml requirements/*.txt | sha256sum | cut -c1-16)"
if [[ ! -f "${stamp}" ]]; then
    # pip's own output only when it fails (its warnings are noise on every fresh clone).
    if ! {
        .venv/bin/python -m pip install -q --require-hashes -r requirements/dev.txt &&
            .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
    } >.venv/install.log 2>&1; then
        cat .venv/install.log >&2
        echo "bootstrap: installing the project into .venv failed (pip's output above)" >&2
        exit 1
    fi
    rm -f .venv/.installed-* && touch "${stamp}"
fi
