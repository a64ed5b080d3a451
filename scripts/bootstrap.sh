#!/usr/bin/env bash
# Prepare a fresh machine: PostgreSQL and Redis up, and .venv with the project and its dev tools.
# Every dependency comes from the hash-locked requirements/dev.txt (`make lock`): uv (itself
# installed by pip from its locked lines) checks each file against its sha256 and installs
# nothing unpinned; then the project itself, editable, with no dependencies and the locked build
# backend (no build isolation: nothing fetched unchecked).
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
    # uv first, by pip, from its own lines of the lock (hashes included); then uv installs the
    # rest: the same locked files, checked the same way, in seconds instead of a minute.
    uv_lock=$(mktemp)
    trap 'rm -f "${uv_lock}"' EXIT
    awk '/^uv==/ {keep = 1} keep {print} keep && !/\\$/ {exit}' requirements/dev.txt >"${uv_lock}"
    # the tools' own output only when they fail (their warnings are noise on every fresh clone).
    if ! {
        .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes \
            --no-deps -r "${uv_lock}" &&
            .venv/bin/uv pip install -q --python .venv/bin/python --require-hashes \
                -r requirements/dev.txt &&
            .venv/bin/uv pip install -q --python .venv/bin/python --no-deps \
                --no-build-isolation -e .
    } >.venv/install.log 2>&1; then
        cat .venv/install.log >&2
        echo "bootstrap: installing the project into .venv failed (the output above)" >&2
        exit 1
    fi
    rm -f .venv/.installed-* && touch "${stamp}"
fi
