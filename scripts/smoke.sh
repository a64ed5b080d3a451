#!/usr/bin/env bash
# CI smoke test of the one-command local stack: `bash scripts/smoke.sh`.
#
# Builds .venv when needed (bootstrap.sh), then devtools/smoke.py starts scripts/run.sh on its
# own ports, Redis and database, runs the demo, stops the stack with SIGTERM and checks that
# nothing is left. Its docstring lists the checks and the overrides (SMOKE_PORT, SMOKE_DATABASE,
# SMOKE_REDIS_SERVER, ...). Logs: .cache/smoke/.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
exec .venv/bin/python -m devtools.smoke
