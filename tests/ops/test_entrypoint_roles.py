"""Every role of scripts/entrypoint.sh against real PostgreSQL and Redis (HubSpot is the fake).

Role tests start real processes and are marked slow. The liveness probe on its own is tested in
tests/ops/test_healthcheck.py.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest
import redis
import requests
from alembic.script import ScriptDirectory
from flask import Flask
from rq import Queue
from rq_scheduler import Scheduler
from sqlalchemy.engine import make_url

from devtools.database import drop_database, ensure_database
from fake_hubspot import FakeHubSpot
from tests.conftest import (
    TABLES,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    service_env,
)
from tests.support.probes import assert_unhealthy, probe
from tests.support.processes import (
    ROOT,
    free_port,
    kill_group,
    process_env,
    start_role,
    wait_for_http,
)
from tests.support.release_helpers import admit, install_portal
from throttle_app.config import Settings
from throttle_app.ops.readiness import MIGRATIONS_DIR
from throttle_app.release.schedule import MAINTENANCE_QUEUE
from workers import healthcheck
from workers.scheduler import periodic_jobs

# --- helpers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def running(role: str, env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen]:
    """A role's process for the duration of the block; SIGTERM (then SIGKILL) afterwards."""
    process = start_role(role, env, *args, log_path=log)
    try:
        yield process
    finally:
        if process.poll() is None:
            kill_group(process, signal.SIGTERM, timeout=30)


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def database_url(name: str) -> str:
    return make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)


# --- the web role --------------------------------------------------------------------------------


@pytest.mark.slow
def test_web_role_answers_health_and_stops_on_sigterm(
    migrated_database: str, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    env = service_env(PORT=str(port), THROTTLE_WEB_WORKERS="1")
    log = tmp_path / "web.log"
    with running("web", env, log) as web:
        wait_for_http(f"http://127.0.0.1:{port}/api/live", process=web)
        answer = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
        assert answer.status_code == 200, tail(log)
        assert answer.json()["status"] == "ok"
        web.send_signal(signal.SIGTERM)  # gunicorn (exec'd by the entrypoint) shuts down
        assert web.wait(30) == 0, tail(log)


# --- the worker role -----------------------------------------------------------------------------


@pytest.mark.slow
def test_worker_role_releases_executions_and_is_live_until_stopped(
    make_app: Callable[..., Flask], fake: FakeHubSpot, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    app = make_app(hubspot_api_base=fake.base_url, hubspot_app_base=fake.base_url)
    install_portal(app, fake)
    env = service_env(HUBSPOT_API_BASE=fake.base_url, HUBSPOT_APP_BASE=fake.base_url)
    log = tmp_path / "worker.log"
    assert_unhealthy(probe(), "no RQ worker registered on")
    with running("worker", env, log) as worker:
        wait_until(lambda: probe().returncode == 0, 30, f"a live worker; log:\n{tail(log)}")
        ids = admit(app, 12, prefix="role", rate=("10", "1", "seconds"))
        wait_until(
            lambda: {c["callback_id"] for c in fake.completions()} >= set(ids),
            30,
            f"the releases at the fake; worker log:\n{tail(log)}",
        )
        assert sorted(c["callback_id"] for c in fake.completions()) == sorted(ids)
        live = probe()
        assert live.returncode == 0, live.stderr
        assert live.stdout.startswith("ok: RQ worker ") and live.stderr == ""
        worker.send_signal(signal.SIGTERM)  # warm shutdown: RQ registers the worker's death
        assert worker.wait(30) == 0, tail(log)
    assert_unhealthy(probe(), "no RQ worker registered on")


# --- the scheduler role --------------------------------------------------------------------------


@pytest.mark.slow
def test_two_schedulers_started_together_register_each_periodic_job_once(
    migrated_database: str, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    env = service_env()
    expected = {job.job_id for job in periodic_jobs(Settings.from_env(env))}
    assert_unhealthy(probe("--scheduler"), "no live rq-scheduler on")
    logs = [tmp_path / "scheduler-1.log", tmp_path / "scheduler-2.log"]
    barrier = threading.Barrier(2)
    processes: list[subprocess.Popen] = []

    def start(log: Path) -> None:
        barrier.wait()
        processes.append(start_role("scheduler", env, log_path=log))

    starters = [threading.Thread(target=start, args=(log,)) for log in logs]
    for thread in starters:
        thread.start()
    for thread in starters:
        thread.join()
    try:
        wait_until(
            lambda: len([s for s in healthcheck.schedulers(redis_conn) if s.alive]) == 2,
            30,
            "two live schedulers; logs:\n" + "\n".join(tail(log) for log in logs),
        )
        time.sleep(3)  # several polls each: the lock holder enqueues, the other skips
        scheduled = {m.decode() for m in redis_conn.zrange(Scheduler.scheduled_jobs_key, 0, -1)}
        assert scheduled == expected
        queued = Counter(
            m.decode()
            for m in redis_conn.lrange(Queue(MAINTENANCE_QUEUE, connection=redis_conn).key, 0, -1)
        )
        assert queued == Counter(expected), "a periodic job was enqueued twice (or never)"
        live = probe("--scheduler")
        assert live.returncode == 0, live.stderr
        assert live.stdout.startswith("ok: rq-scheduler ")
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process, log in zip(processes, logs, strict=True):
            assert process.wait(30) == 0, tail(log)
    finally:
        for process in processes:
            if process.poll() is None:
                kill_group(process)
    assert_unhealthy(probe("--scheduler"), "no live rq-scheduler on")


# --- the migrate role ----------------------------------------------------------------------------


@pytest.mark.slow
def test_migrate_role_upgrades_an_empty_database(
    migrated_database: str, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    name = f"{make_url(TEST_DATABASE_URL).database}_migrate_{uuid.uuid4().hex[:8]}"
    url = database_url(name)
    ensure_database(url)
    try:
        log = tmp_path / "migrate.log"
        env = service_env(DATABASE_URL=url)
        with running("migrate", env, log) as migrate:
            assert migrate.wait(120) == 0, tail(log)
        head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        conn = psycopg2.connect(url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT version_num FROM alembic_version")
                assert cur.fetchall() == [(head,)]
                cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                assert {row[0] for row in cur.fetchall()} >= set(TABLES)
        finally:
            conn.close()
        # A second run is a no-op.
        with running("migrate", env, tmp_path / "migrate-again.log") as again:
            assert again.wait(120) == 0, tail(tmp_path / "migrate-again.log")
    finally:
        drop_database(url)


# --- the dashboard and flask roles, and the entrypoint's own errors -------------------------------


@pytest.mark.slow
def test_dashboard_role_requires_its_password(redis_conn: redis.Redis, tmp_path: Path) -> None:
    port = free_port()
    env = {
        "REDIS_URL": TEST_REDIS_URL,
        "PORT": str(port),
        "THROTTLE_DASHBOARD_USERNAME": "ops",
        "THROTTLE_DASHBOARD_PASSWORD": "role-test-password-0123456789abcdef",
    }
    log = tmp_path / "dashboard.log"
    with running("dashboard", env, log) as dashboard:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/", process=dashboard)
        assert requests.get(f"{base}/", timeout=5).status_code == 401
        assert requests.get(f"{base}/", auth=("ops", "wrong"), timeout=5).status_code == 401
        good = ("ops", "role-test-password-0123456789abcdef")
        assert requests.get(f"{base}/", auth=good, timeout=5).status_code == 200
        deleted = requests.post(f"{base}/job/anything/delete", auth=good, timeout=5)
        assert deleted.json() == {"status": "DISABLED"}
        # The app's guard is in front (rq-dashboard's own CLI answers these with a 200):
        assert requests.get(f"{base}/requeue/x", auth=good, timeout=5).status_code == 405
        other_site = {"Origin": "https://evil.example"}
        compact = requests.post(f"{base}/queue/x/compact", auth=good, headers=other_site, timeout=5)
        assert compact.status_code == 403
    refused = start_role("dashboard", {k: v for k, v in env.items() if "PASSWORD" not in k})
    assert refused.wait(30) == 78


def test_flask_role_runs_the_cli(migrated_database: str) -> None:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    entrypoint = str(ROOT / "scripts" / "entrypoint.sh")
    result = subprocess.run(
        ["bash", entrypoint, "flask", "--app", "throttle_app", "db", "current"],
        env=process_env(service_env()),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"{head} (head)" in result.stdout


@pytest.mark.parametrize(
    "args", [["nonsense"], [], ["scheduler", "extra"], ["migrate", "extra"], ["web", "x"]]
)
def test_entrypoint_refuses_unknown_roles_and_extra_arguments(args: list[str]) -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "entrypoint.sh"), *args],
        env=process_env({}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 64
    assert "usage: entrypoint.sh ROLE" in result.stderr
