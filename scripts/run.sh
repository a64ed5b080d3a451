#!/usr/bin/env bash
# Run the whole service locally against a sandbox HubSpot: `bash scripts/run.sh`; Ctrl-C stops it.
#
# Starts PostgreSQL and Redis when needed and builds .venv (bootstrap.sh), then
# devtools/local_stack.py prepares the dev secrets and the database and runs the Procfile with
# honcho (fake HubSpot, web, worker, scheduler). Its docstring lists the overrides (PORT,
# FAKE_PORT, DEV_DATABASE, DEV_REDIS_DB, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
exec .venv/bin/python -m devtools.local_stack
