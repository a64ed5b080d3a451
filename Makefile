# Common commands; each one is a script you can also run directly.
.PHONY: help run test test-fast lint format chart bench-intake bench-release bench-cleaner bench-ops bench-time-zones demo smoke soak ci

help:            ## list the commands
	@grep -E '^[a-z-]+:.*##' Makefile | sed 's/:.*## /\t/'

run:             ## the whole service locally, with a fake HubSpot sandbox
	bash scripts/run.sh

test:            ## the whole test suite (real PostgreSQL and Redis)
	bash scripts/test.sh

test-fast:       ## the suite without the end-to-end tests that start processes
	bash scripts/test.sh -m "not slow"

lint:            ## ruff check, format check and the import contracts (.importlinter)
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/lint-imports

format:          ## ruff format and autofix
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

chart:           ## lint, render and validate the Helm chart offline
	bash scripts/check_chart.sh

.PHONY: lock audit sbom
lock:            ## regenerate requirements/*.txt (hash-locked) from pyproject.toml
	bash scripts/lock.sh

audit:           ## bandit on the shipped code, pip-audit on the locks
	bash scripts/audit.sh

sbom:            ## the image's CycloneDX SBOM, from the runtime lock, into build/sbom.cdx.json
	bash scripts/sbom.sh

bench-intake:    ## durable intake against its no-database ceiling (needs wrk)
	.venv/bin/python scripts/bench_intake.py

bench-release:   ## release throughput and rate accuracy against the fake HubSpot
	.venv/bin/python scripts/bench_release.py

bench-cleaner:   ## one cleaner pass over 2,000 queues with work
	.venv/bin/python scripts/bench_cleaner.py

bench-ops:       ## /ops and the expiry-risk reads on production-sized tables
	.venv/bin/python scripts/bench_ops.py --queues-idle 10000 --terminal-rows 5000000

bench-time-zones: ## the cleaner's time zone step: passes asking portals' zones
	.venv/bin/python scripts/bench_time_zones.py

demo:            ## install a sandbox portal and watch two queues release (needs `make run`)
	.venv/bin/python scripts/demo.py

smoke:           ## start the local stack, run the demo, stop it
	bash scripts/smoke.sh

soak:            ## 10 minutes of webhooks while web and workers are SIGKILLed; prints RSS (CI: 2)
	THROTTLE_SOAK_SECONDS=600 bash scripts/test.sh tests/faults/test_soak.py -s

ci:              ## what CI runs
	bash .ci/run
