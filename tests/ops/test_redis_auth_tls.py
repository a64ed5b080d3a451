"""Redis AUTH and TLS (`rediss://`): every process works against a Redis that requires a
password, and one that also speaks only TLS with a certificate the client must verify.

The server is a private redis-server (tests/support/processes.py); the TLS one has a
certificate for 127.0.0.1 from a throwaway CA, given to the clients as `ssl_ca_certs` in the
URL, as an operator would. Nothing here disables verification: a client without the CA is
refused, so the service's processes verified the server."""

from __future__ import annotations

import contextlib
import json
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import requests
from flask import Flask
from rq_scheduler import Scheduler

from fake_hubspot import FakeHubSpot
from tests.conftest import service_env
from tests.support.hubspot_requests import execution_payload, signed_headers
from tests.support.processes import (
    Stack,
    free_port,
    kill_group,
    private_redis,
    process_env,
    start_role,
    wait_for_http,
)
from tests.support.release_helpers import PORTAL
from throttle_app.config import Settings
from throttle_app.services import redis_connection
from workers.scheduler import periodic_jobs

PASSWORD = "redis-auth-test-0123456789abcdef"
DASHBOARD_PASSWORD = "dashboard-test-password-0123456789"


def without_password(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.split("@", 1)[1]).geturl()


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_rediss_url_reaches_redis_py_with_verification_on() -> None:
    url = "rediss://:pw@redis.internal:6380/0?ssl_ca_certs=/etc/throttle/redis-ca.pem"
    settings = Settings.from_env(service_env(REDIS_URL=url))
    pool = redis_connection(settings).connection_pool
    assert pool.connection_class is redis.SSLConnection
    connection = pool.make_connection()
    assert connection.cert_reqs == ssl.CERT_REQUIRED
    assert connection.check_hostname is True
    assert connection.ca_certs == "/etc/throttle/redis-ca.pem"
    assert (connection.host, connection.port, connection.password) == ("redis.internal", 6380, "pw")


@pytest.mark.slow
@pytest.mark.parametrize("tls", [False, True], ids=["auth", "auth-tls"])
def test_every_process_works_with_redis_auth(
    installed: Flask, fake: FakeHubSpot, tmp_path: Path, tls: bool
) -> None:
    with private_redis(tmp_path, password=PASSWORD, tls=tls) as url:
        with pytest.raises(redis.AuthenticationError):  # the server really requires AUTH
            redis.Redis.from_url(without_password(url)).ping()
        if tls:  # and really verifies: without the CA, the certificate is refused
            with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                redis.Redis.from_url(url.split("?")[0]).ping()
        connection = redis.Redis.from_url(url)
        stack = Stack(fake, tmp_path, workers=1, redis_url=url)
        dashboard = None
        try:
            # web: /api/health reads Redis with the URL's password (and TLS)
            health = requests.get(f"{stack.base}/api/health", timeout=5)
            assert health.status_code == 200, health.text
            # web admits and wakes the queue; the worker's release clock promotes the wake-up;
            # the worker releases: every hop goes through this Redis
            ids = [f"auth-{n}" for n in range(5)]
            for callback_id in ids:
                payload = execution_payload(
                    callback_id=callback_id, portal_id=PORTAL, max_throughput="10",
                    time_value="1", period="seconds",
                )  # fmt: skip
                body = json.dumps(payload).encode()
                url_signed = f"{stack.base}/api/hubspot/action"
                answer = requests.post(
                    url_signed, data=body, headers=signed_headers(body, url=url_signed), timeout=5
                )
                assert answer.status_code == 200, answer.text
            wait_until(
                lambda: {c["callback_id"] for c in fake.completions()} >= set(ids),
                60,
                "the releases through the authenticated Redis",
            )
            # scheduler: the periodic jobs are registered in this Redis
            expected = {job.job_id for job in periodic_jobs(Settings.from_env(stack.env))}
            wait_until(
                lambda: (
                    {m.decode() for m in connection.zrange(Scheduler.scheduled_jobs_key, 0, -1)}
                    == expected
                ),
                30,
                "the scheduler's periodic jobs",
            )
            # the liveness probes read the same URL
            for flag in ([], ["--scheduler"]):
                probe = subprocess.run(
                    [sys.executable, "-m", "workers.healthcheck", *flag],
                    env={**process_env({}), "REDIS_URL": url},
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                assert probe.returncode == 0, probe.stderr
            # the dashboard role (its own pod's settings only, outside development mode)
            port = free_port()
            dashboard = start_role(
                "dashboard",
                {
                    "REDIS_URL": url,
                    "PORT": str(port),
                    "THROTTLE_DASHBOARD_PASSWORD": DASHBOARD_PASSWORD,
                    "THROTTLE_DEV_MODE": "false",
                },
                log_path=tmp_path / "dashboard.log",
            )
            base = f"http://127.0.0.1:{port}"
            wait_for_http(f"{base}/", process=dashboard)
            queues = requests.get(
                f"{base}/0/data/queues.json", auth=("admin", DASHBOARD_PASSWORD), timeout=5
            )
            assert queues.status_code == 200, (tmp_path / "dashboard.log").read_text()
            names = {q["name"] for q in queues.json()["queues"]}
            assert {"releases", "maintenance"} <= names
        finally:
            if dashboard is not None:
                kill_group(dashboard, signal.SIGTERM)
            stack.stop()
        for log in tmp_path.glob("*.log"):
            with contextlib.suppress(FileNotFoundError):
                assert PASSWORD not in log.read_text(errors="replace"), log.name
