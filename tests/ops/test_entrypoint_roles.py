"""Every role of scripts/entrypoint.sh against real PostgreSQL and Redis (HubSpot is the fake),
and the liveness probe `python -m workers.healthcheck [--scheduler]` that the chart runs.

Role tests start real processes and are marked slow; the probe tests that only need Redis
entries are not.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
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
from rq import Queue, Worker
from rq_scheduler import Scheduler
from sqlalchemy.engine import make_url

from fake_hubspot import FakeHubSpot
from tests.conftest import (
    TABLES,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    service_env,
)
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
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def admin_connection():
    url = make_url(TEST_DATABASE_URL)
    conn = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, dbname="postgres"
    )
    conn.autocommit = True
    return conn


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
    admin = admin_connection()
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        log = tmp_path / "migrate.log"
        env = service_env(DATABASE_URL=database_url(name))
        with running("migrate", env, log) as migrate:
            assert migrate.wait(120) == 0, tail(log)
        head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        conn = psycopg2.connect(database_url(name))
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
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


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


# --- the liveness probe on its own ---------------------------------------------------------------


def test_probe_key_names_are_the_installed_packages() -> None:
    from rq.worker_registration import REDIS_WORKER_KEYS

    assert healthcheck.WORKERS_KEY == REDIS_WORKER_KEYS
    assert Worker.redis_worker_namespace_prefix == healthcheck.WORKER_PREFIX
    assert Scheduler.redis_scheduler_namespace_prefix == healthcheck.SCHEDULER_PREFIX


def register_worker(connection: redis.Redis, hostname: str | None = None) -> Worker:
    worker = Worker([Queue("releases", connection=connection)], connection=connection)
    if hostname is not None:
        worker.hostname = hostname
    worker.register_birth()
    return worker


def test_worker_probe_counts_only_a_live_worker_of_this_host(redis_conn: redis.Redis) -> None:
    assert_unhealthy(probe(), "no RQ worker registered on", socket.gethostname())
    register_worker(redis_conn, hostname="some-other-pod")
    assert_unhealthy(probe(), "no RQ worker registered on", "1 on other hosts")
    mine = register_worker(redis_conn)
    live = probe()
    assert live.returncode == 0, live.stderr
    assert mine.name in live.stdout
    mine.register_death()
    assert_unhealthy(probe(), "no RQ worker registered on")  # death unregisters it


def test_worker_probe_refuses_a_worker_whose_heartbeat_expired(redis_conn: redis.Redis) -> None:
    worker = register_worker(redis_conn)
    redis_conn.pexpire(worker.key, 50)  # as if its last heartbeat promised 50 ms
    time.sleep(0.2)
    assert redis_conn.sismember(healthcheck.WORKERS_KEY, worker.key)  # still in the registry
    assert_unhealthy(probe(), "no RQ worker registered on")


def test_scheduler_probe_counts_only_a_live_scheduler_of_this_host(
    redis_conn: redis.Redis,
) -> None:
    assert_unhealthy(probe("--scheduler"), "no live rq-scheduler on")
    elsewhere = Scheduler(
        connection=redis_conn, name=healthcheck.scheduler_instance_name("some-other-pod")
    )
    elsewhere.register_birth()
    assert_unhealthy(probe("--scheduler"), "no live rq-scheduler on", "1 alive on other hosts")
    mine = Scheduler(connection=redis_conn, name=healthcheck.scheduler_instance_name())
    mine.register_birth()
    live = probe("--scheduler")
    assert live.returncode == 0, live.stderr
    assert mine.name in live.stdout
    mine.register_death()
    assert_unhealthy(probe("--scheduler"), "no live rq-scheduler on")


def test_scheduler_probe_accepts_a_scheduler_named_without_a_host(
    redis_conn: redis.Redis,
) -> None:
    """rq-scheduler's default names (a bare uuid) carry no host: accepted when nothing else
    speaks for this host, so the probe works with schedulers not named by this project."""
    unnamed = Scheduler(connection=redis_conn)
    unnamed.register_birth()
    live = probe("--scheduler")
    assert live.returncode == 0, live.stderr
    assert "carries no host" in live.stdout
    redis_conn.pexpire(unnamed.key, 50)  # its heartbeat lapses
    time.sleep(0.2)
    assert_unhealthy(probe("--scheduler"), "no live rq-scheduler on")


def test_scheduler_instance_names_are_unique_and_start_with_the_host() -> None:
    names = {healthcheck.scheduler_instance_name("pod-a", 1) for _ in range(50)}
    assert len(names) == 50
    assert all(name.startswith("pod-a:1:") for name in names)


def test_probe_without_redis_url_fails_with_one_line(capsys: pytest.CaptureFixture) -> None:
    assert healthcheck.main([], env={}) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "healthcheck (worker): REDIS_URL is not set\n"


def test_probe_against_unreachable_redis_does_not_ask_for_a_restart() -> None:
    """A restart cannot bring Redis back; RQ reconnects by itself (no crash loop)."""
    started = time.monotonic()
    result = probe(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert time.monotonic() - started < 10
    assert result.returncode == 0, result.stderr
    assert "Redis unreachable" in result.stdout


def test_probe_against_a_silent_server_gives_up_within_ten_seconds() -> None:
    """A server that accepts connections but never answers (a hung Redis)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        started = time.monotonic()
        result = probe("--scheduler", redis_url=f"redis://127.0.0.1:{port}/0")
        elapsed = time.monotonic() - started
    assert elapsed < 10.5
    assert result.returncode == 0, result.stderr
    assert "Redis" in result.stdout and "not a reason to restart" in result.stdout


def test_probe_never_prints_the_redis_password() -> None:
    secret = "s3cret-redis-password"
    port = free_port()
    result = probe(redis_url=f"redis://:{secret}@127.0.0.1:{port}/0")
    assert result.returncode == 0 and "Redis unreachable" in result.stdout
    assert secret not in result.stderr + result.stdout
    bad = probe(redis_url=f"http://:{secret}@example.invalid/0")
    assert_unhealthy(bad, "REDIS_URL is not a usable Redis URL")
    assert secret not in bad.stderr
