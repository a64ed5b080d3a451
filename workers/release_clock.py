"""The release clock: promotes due wake-ups (millisecond due times) to RQ release jobs.

It promotes a wake-up within milliseconds of its due time, on any Redis `hz`
(tests/test_release_clock.py); the release job then starts THROTTLE_RELEASE_LEAD_MS early and
sleeps until its window opens.

One runs beside each RQ worker that serves the `releases` queue (workers/worker.py starts it
as a child process). Several clocks are safe: wake-ups are popped atomically. It sleeps until
the next wake-up is due or a new one is added (a pub/sub nudge; the sleep is timed here, not by
a Redis blocking timeout, see release_schedule.Nudges), and exits when its parent worker is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time

import redis

from throttle_app.release_schedule import Nudges, ReleaseSchedule

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
    nudges: Nudges | None = None
    while not stopping and os.getppid() == parent_pid:
        try:
            nudges = nudges or schedule.listen()  # before promoting: no wake-up goes unheard
            until_next = schedule.promote_due()
        except redis.RedisError as exc:
            log.warning("release clock: redis unavailable (%s); retrying", type(exc).__name__)
            nudges = _closed(nudges)
            time.sleep(1.0)
            continue
        except Exception:  # the clock must outlive any bad record; the cleaner repairs state
            log.exception("release clock: promotion failed; retrying")
            time.sleep(0.5)
            continue
        sleep = MAX_SLEEP_SECONDS if until_next is None else min(until_next, MAX_SLEEP_SECONDS)
        if sleep > 0:
            try:
                nudges.wait(sleep)
            except redis.RedisError:
                nudges = _closed(nudges)
                time.sleep(sleep)
    _closed(nudges)


def _closed(nudges: Nudges | None) -> None:
    """Drop a subscription whose connection failed (the next loop subscribes afresh)."""
    if nudges is not None:
        with contextlib.suppress(redis.RedisError):
            nudges.close()
