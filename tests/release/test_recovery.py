"""A worker that dies or is stopped costs seconds, not minutes, and never breaks the rate.

The real stack (gunicorn web, RQ workers with their release clocks, the scheduler) runs with
the production defaults for everything that decides how long a dead worker's claim holds its
queue (lease, cleaner interval, HTTP timeouts); the fake HubSpot is made slow so that a call is
in flight when the worker goes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import redis
from rq import Worker
from rq.job import Job

from fake_hubspot import FakeHubSpot
from tests.release.window_checks import RECEIPT_JITTER, max_in_window, wait_until
from tests.support.processes import Stack, kill_group
from tests.support.release_helpers import backlog, query, states
from throttle_app.config import Settings
from throttle_app.release.schedule import ReleaseSchedule

pytestmark = pytest.mark.slow

RESUME_LIMIT_SECONDS = 20.0  # issue 10: a dead worker's queue resumes within 20 s
MEASURE_FOR_SECONDS = 150.0  # how long to wait for a resumption at all (a 120 s lease resumed)


def production_timing() -> dict[str, str]:
    """The defaults that decide how long a dead worker's claim can hold its queue."""
    return {
        "THROTTLE_LEASE_SECONDS": str(Settings.lease_seconds),
        "THROTTLE_CLEANER_INTERVAL_SECONDS": str(Settings.cleaner_interval_seconds),
        "THROTTLE_HTTP_CONNECT_TIMEOUT_SECONDS": str(Settings.http_connect_timeout_seconds),
        "THROTTLE_HTTP_READ_TIMEOUT_SECONDS": str(Settings.http_read_timeout_seconds),
    }


def worker_running(stack: Stack, connection: redis.Redis, queue: int) -> subprocess.Popen:
    """The stack's worker process that runs the queue's release job now."""
    job = Job.fetch(f"release-{queue}", connection=connection)
    worker = Worker.find_by_key(
        Worker.redis_worker_namespace_prefix + job.worker_name, connection=connection
    )
    assert worker is not None, "the job's worker is not registered"
    return next(process for process in stack.workers if process.pid == worker.pid)


def call_in_flight(fake: FakeHubSpot, latency: float) -> None:
    """Slow HubSpot down and return once a completing call has reached it (the fake records a
    call's completions when it decides, then sleeps `latency` before answering)."""
    seen = {c["batch_id"] for c in fake.completions()}
    fake.set_faults(callback_latency=latency)
    wait_until(lambda: any(c["batch_id"] not in seen for c in fake.completions()), 15)


def test_a_worker_killed_mid_call_holds_its_queue_for_seconds(
    installed, fake, tmp_path, redis_conn
):
    queue = backlog(installed, 600, 10, 1)  # 10 per 1 s
    connection = redis_conn
    stack = Stack(fake, tmp_path, workers=2, **production_timing())
    try:
        ReleaseSchedule(connection).wake([queue])
        wait_until(lambda: len(fake.completions()) >= 30, 30)
        call_in_flight(fake, latency=4.0)  # under the 10 s read timeout: the call is live
        victim = worker_running(stack, connection, queue)
        kill_group(victim, signal.SIGKILL)
        killed_at = time.time()
        fake.set_faults(callback_latency=0.0)
        resumed = wait_until(
            lambda: [c["time"] for c in fake.completions() if c["time"] > killed_at],
            MEASURE_FOR_SECONDS,
            every=0.1,
        )
    finally:
        stack.stop()
    gap = min(resumed) - killed_at
    print(f"the queue released again {gap:.1f}s after its worker was SIGKILLed mid-call")
    assert gap < RESUME_LIMIT_SECONDS
    times = [c["time"] for c in fake.completions()]
    assert (
        max_in_window(times, 1.0 - RECEIPT_JITTER) <= 10
    )  # the dead worker's send counted in its window


def test_sigterm_gives_the_claim_back_at_the_next_step(installed, fake, tmp_path, redis_conn):
    """A rolling restart: the job stops before its next call and its claim returns at once,
    instead of holding the queue until the lease ends or the cleaner comes by."""
    fake.set_faults(bad_callback_ids=["b-3"], callback_latency=2.0)
    stack = Stack(fake, tmp_path, workers=1, **production_timing())
    try:
        # after the start-up's cleaner pass, so nothing is sent before this wake-up
        queue = backlog(installed, 10, 10, 60)  # one claim of 10; b-3 is refused: it is halved
        ReleaseSchedule(redis_conn).wake([queue])
        wait_until(lambda: fake.stats()["calls"].get("complete_batch"), 30)  # the 400 in flight
        worker = stack.workers[0]
        os.kill(worker.pid, signal.SIGTERM)  # what Kubernetes sends to the container's PID 1
        stopped_at = time.monotonic()
        worker.wait(60)
        stopping = time.monotonic() - stopped_at
        left = states(installed)
        attempts = query(installed, "SELECT max(attempts) FROM action_executions")[0][0]
        sent_before_restart = fake.completions()
        calls_before_restart = fake.stats()["calls"]["complete_batch"]
        fake.set_faults(callback_latency=0.0)
        stack.workers.append(stack.start_worker(1))
        restarted_at = time.monotonic()
        wait_until(lambda: states(installed) == {"completed": 9, "failed": 1}, 60, every=0.2)
        resumed = time.monotonic() - restarted_at
    finally:
        stack.stop()
    print(f"worker stopped {stopping:.1f}s after SIGTERM; the next one finished in {resumed:.1f}s")
    assert worker.returncode == 0
    assert calls_before_restart == {"400": 1}  # the call in flight, then no further call
    assert sent_before_restart == []
    assert left == {"pending": 10} and attempts == 0  # given back, not left claimed
    assert stopping < 10.0  # the 2 s call, the worker's exit: far inside the 65 s grace
    assert resumed < Settings.lease_seconds  # nobody waited for the lease to end
