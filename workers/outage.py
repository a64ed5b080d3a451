"""Keep a worker or the scheduler running through a Redis outage.

RQ's work loop retries Redis only while it waits for a job: a Redis error anywhere else (a
heartbeat, a job's bookkeeping) ends the loop, and rq-scheduler's `run()` lets every Redis error
out. Either way the process used to exit and wait for its supervisor. `keep_running` starts a
fresh instance instead, backing off while Redis stays away, and gives up (exit status 1, so the
supervisor sees a crash) once runs have kept failing for `give_up_seconds`.

Nothing durable is lost in between: executions, budgets and next release times live in
PostgreSQL; the release clock and the cleaner rebuild wake-ups and jobs (release/schedule.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 10.0
STEADY_SECONDS = 60.0  # a run that lasted this long ends a streak of failures
GIVE_UP_SECONDS = 300.0


def keep_running(
    run: Callable[[], bool],
    what: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    give_up_seconds: float = GIVE_UP_SECONDS,
) -> None:
    """Call `run` until it returns True (it ended on request: SIGTERM, or a burst run).

    A run that returns False (it quit by itself) or raises a Redis error is started again after
    a back-off (0.5 s doubling to 10 s). Any other exception, SystemExit included, ends the
    process as before.
    """
    delay = FIRST_DELAY_SECONDS
    failing_since: float | None = None
    while True:
        started = clock()
        try:
            if run():
                return
            reason = "quit by itself"
        except redis.RedisError as exc:
            reason = f"lost Redis ({type(exc).__name__}: {exc})"
        ended = clock()
        if failing_since is None or ended - started >= STEADY_SECONDS:
            failing_since, delay = started, FIRST_DELAY_SECONDS
        if ended - failing_since >= give_up_seconds:
            log.error("%s %s; failing for %.0fs, giving up", what, reason, ended - failing_since)
            raise SystemExit(1)
        log.warning("%s %s; starting again in %.1fs", what, reason, delay)
        sleep(delay)
        delay = min(delay * 2, MAX_DELAY_SECONDS)
