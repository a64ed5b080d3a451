#!/usr/bin/env bash
# The whole test suite, from a fresh machine: services, venv, then pytest on real PostgreSQL and
# real Redis (HubSpot is the only fake). Extra arguments go to pytest, e.g. `-m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q "$@"
