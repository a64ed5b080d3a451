"""Start the project's real processes (through scripts/entrypoint.sh) for end-to-end tests.

free_port is devtools' (imported here for the tests that use it with the helpers below)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from devtools.ports import free_port
from devtools.redis_server import TlsFiles
from devtools.redis_server import private_redis as devtools_private_redis
from fake_hubspot import FakeHubSpot
from tests.conftest import TEST_REDIS_URL, service_env

ROOT = Path(__file__).resolve().parents[2]


def process_env(env: dict[str, str]) -> dict[str, str]:
    """The environment for a child process: the test settings plus this interpreter's venv."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        **env,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
    }


def start_role(role: str, env: dict[str, str], *args: str, log_path: Path | None = None):
    """Run `scripts/entrypoint.sh ROLE ARGS` in its own process group."""
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "entrypoint.sh"), role, *args],
        env=process_env(env),
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for_http(url: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 20) -> None:
    """Send `sig` to the process and all its children (its process group), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@contextlib.contextmanager
def private_redis(
    tmp_path: Path, *options: str, password: str | None = None, tls: bool = False
) -> Iterator[str]:
    """devtools' private redis-server; `tls=True` makes it TLS-only with a certificate for
    127.0.0.1 from a throwaway CA (tests/support/tls.py)."""
    files = None
    if tls:
        from tests.support.tls import make_server_certificate

        made = make_server_certificate(tmp_path / "redis-tls")
        files = TlsFiles(cert=made.cert, key=made.key, ca=made.ca)
    with devtools_private_redis(tmp_path, *options, password=password, tls=files) as url:
        yield url


class Stack:
    """The service's processes on loopback ports, against the test database and Redis."""

    def __init__(
        self,
        fake: FakeHubSpot,
        tmp_path,
        workers: int,
        redis_url: str | None = None,
        **settings: str,
    ) -> None:
        """`settings`: environment variables that replace the stack's test values (e.g. the
        production defaults a test wants to prove: THROTTLE_LEASE_SECONDS=...)."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.redis_url = redis_url or TEST_REDIS_URL
        self.env = service_env(
            REDIS_URL=self.redis_url,
            PORT=str(self.port),
            PUBLIC_BASE_URL=self.base,
            HUBSPOT_API_BASE=fake.base_url,
            HUBSPOT_APP_BASE=fake.base_url,
            # a short lease (a killed worker's rows return fast) must still outlast one call:
            # bucket wait 2 + connect 1 + read 3 + 1 s margin (config.py rejects less)
            THROTTLE_LEASE_SECONDS="8",
            THROTTLE_CLEANER_INTERVAL_SECONDS="2",
            THROTTLE_HTTP_CONNECT_TIMEOUT_SECONDS="1",
            THROTTLE_HTTP_READ_TIMEOUT_SECONDS="3",
            THROTTLE_WEB_WORKERS="2",
            THROTTLE_LOG_LEVEL=os.environ.get("E2E_LOG_LEVEL", "WARNING"),
        )
        self.env.update(settings)
        self.tmp_path = tmp_path
        self.web = self.scheduler = None
        self.workers: list[subprocess.Popen] = []
        try:
            self.web = start_role("web", self.env, log_path=tmp_path / "web.log")
            self.workers = [self.start_worker(n) for n in range(workers)]
            self.scheduler = start_role("scheduler", self.env, log_path=tmp_path / "scheduler.log")
            wait_for_http(f"{self.base}/api/health", process=self.web)
        except BaseException:
            self.stop()  # a stack that did not start leaves no process behind
            raise

    def start_worker(self, n: int):
        return start_role("worker", self.env, log_path=self.tmp_path / f"worker-{n}.log")

    def stop(self) -> None:
        for process in [self.web, self.scheduler, *self.workers]:
            if process is not None:
                kill_group(process, signal.SIGTERM)
