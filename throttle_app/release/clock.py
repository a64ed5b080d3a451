"""The release clock: promotes due wake-ups (millisecond due times) to RQ release jobs.

It promotes a wake-up within milliseconds of its due time, on any Redis `hz`
(tests/release/test_clock.py); the release job then starts THROTTLE_RELEASE_LEAD_MS early and
sleeps until its window opens.

One runs beside each RQ worker that serves the `releases` queue (workers/worker.py starts it
as a child process). Several clocks are safe: wake-ups are popped atomically. It sleeps until
the next wake-up is due or a new one is added (a pub/sub nudge; the sleep is timed here, not by
a Redis blocking timeout, see throttle_app/release/nudges.py and docs/design.md), and
exits when its parent worker is gone. A Redis user that may not subscribe to the channel makes
it look every POLL_SECONDS instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time

import redis

from throttle_app.release.nudges import Nudges
from throttle_app.release.schedule import ReleaseSchedule

log = logging.getLogger(__name__)
MAX_SLEEP_SECONDS = 1.0
POLL_SECONDS = 0.1  # the sleep between looks when the Redis user may not subscribe


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
    clock = _Clock(ReleaseSchedule(connection, job_timeout=job_timeout, stale_after=stale_after))
    while not stopping and os.getppid() == parent_pid:
        clock.tick()
    clock.unsubscribe()


class _Clock:
    """One promote-and-sleep step at a time, keeping its subscription between steps."""

    def __init__(self, schedule: ReleaseSchedule) -> None:
        self.schedule = schedule
        self.nudges: Nudges | None = None
        self.deaf = False  # the Redis user may not subscribe: poll instead

    def tick(self) -> None:
        try:
            self._subscribe()  # before promoting: no wake-up goes unheard
            until_next = self.schedule.promote_due()
        except redis.RedisError as exc:
            log.warning("release clock: redis unavailable (%s); retrying", type(exc).__name__)
            self.unsubscribe()
            time.sleep(1.0)
            return
        except Exception:  # the clock must outlive any bad record; the cleaner repairs state
            log.exception("release clock: promotion failed; retrying")
            time.sleep(0.5)
            return
        sleep = MAX_SLEEP_SECONDS if until_next is None else min(until_next, MAX_SLEEP_SECONDS)
        if sleep <= 0:
            return
        if self.nudges is None:
            time.sleep(min(sleep, POLL_SECONDS))
            return
        try:
            self.nudges.wait(sleep)
        except Exception as exc:  # a dropped connection: subscribe again on the next tick
            log.warning("release clock: lost its subscription (%s)", type(exc).__name__)
            self.unsubscribe()
            time.sleep(min(sleep, POLL_SECONDS))  # never a busy loop, however it fails

    def _subscribe(self) -> None:
        if self.nudges is not None or self.deaf:
            return
        try:
            self.nudges = self.schedule.listen()
        except redis.exceptions.NoPermissionError:
            self.deaf = True
            log.warning(
                "release clock: the Redis user may not subscribe to %s; looking for due"
                " wake-ups every %.1fs instead (grant the channel, README: Operating)",
                self.schedule.nudge_channel,
                POLL_SECONDS,
            )

    def unsubscribe(self) -> None:
        """Drop the subscription (the next tick subscribes afresh)."""
        if self.nudges is not None:
            with contextlib.suppress(redis.RedisError):
                self.nudges.close()
            self.nudges = None
