"""The release clock: promotes due wake-ups (millisecond due times) to RQ release jobs.

How late it promotes is part of each window's 15-20 ms (README, Measurements: bench_release).

One runs beside each RQ worker that serves the `releases` queue (workers/worker.py starts it
as a child process). Several clocks are safe: wake-ups are popped atomically. It sleeps until
the next wake-up is due or a new one is added, and exits when its parent worker is gone.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import redis

from throttle_app.release_schedule import ReleaseSchedule

log = logging.getLogger(__name__)
MAX_SLEEP_SECONDS = 1.0


def run_clock(redis_url: str, job_timeout: int, parent_pid: int, stale_after: float) -> None:
    """Loop until SIGTERM or the parent process dies. `stale_after`: Settings.stale_job_seconds
    (a running job older than that without a heartbeat is replaced)."""
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    connection = redis.Redis.from_url(redis_url, socket_timeout=MAX_SLEEP_SECONDS + 5)
    schedule = ReleaseSchedule(connection, job_timeout=job_timeout, stale_after=stale_after)
    while not stopping and os.getppid() == parent_pid:
        try:
            until_next = schedule.promote_due()
        except redis.RedisError as exc:
            log.warning("release clock: redis unavailable (%s); retrying", type(exc).__name__)
            time.sleep(1.0)
            continue
        except Exception:  # the clock must outlive any bad record; the cleaner repairs state
            log.exception("release clock: promotion failed; retrying")
            time.sleep(0.5)
            continue
        sleep = MAX_SLEEP_SECONDS if until_next is None else min(until_next, MAX_SLEEP_SECONDS)
        if sleep > 0:
            try:
                schedule.wait_for_nudge(sleep)
            except redis.RedisError:
                time.sleep(sleep)
