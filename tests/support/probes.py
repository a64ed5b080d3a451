"""The liveness probe `python -m workers.healthcheck [--scheduler]` run as the chart runs it (its
own process), and the one-line verdict it must give when unhealthy."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import TEST_REDIS_URL
from tests.support.processes import ROOT, process_env


def probe(*args: str, redis_url: str = TEST_REDIS_URL) -> subprocess.CompletedProcess:
    """`python -m workers.healthcheck ARGS` as the chart runs it: its own process."""
    env = {**process_env({}), "REDIS_URL": redis_url}
    return subprocess.run(
        [sys.executable, "-m", "workers.healthcheck", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )


def assert_unhealthy(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit status 1 and a single stderr line holding every one of `words`."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
