"""Development tools: the local stack, the smoke run, the demo, the benchmarks and their helpers.

Dev-only: not in the wheel (pyproject.toml packages only throttle_app and workers) and not in
the runtime image (.dockerignore). The service never imports it; scripts/ and tests/ do, from
the repository root. This package's own import needs only the standard library, so a tool's
interpreter without the project's dependencies can run a stdlib-only module of it.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: where scripts/, the Procfile and .venv are."""
