"""The liveness probe `python -m workers.healthcheck [--scheduler]` that the chart runs, against
real Redis entries (no worker or scheduler process needed)."""

from __future__ import annotations

import socket
import time

import pytest
import redis
from rq import Queue, Worker
from rq_scheduler import Scheduler

from tests.support.probes import assert_unhealthy, probe
from tests.support.processes import free_port
from workers import healthcheck


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
