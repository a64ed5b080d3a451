"""The release clock promotes a wake-up when it is due, however coarse the Redis server's timer.

A window opens T after the last send; a clock that wakes late adds its lateness to every window.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator

import pytest
import redis

from devtools.redis_server import private_redis
from throttle_app.release.clock import POLL_SECONDS, run_clock
from throttle_app.release.schedule import RELEASES_QUEUE, ReleaseSchedule


@pytest.fixture
def coarse_redis(tmp_path) -> Iterator[redis.Redis]:
    """A server that runs its timer once a second (`hz 1`): blocking-command timeouts fire
    up to a second late on it."""
    with private_redis(tmp_path, "--hz", "1") as url:
        yield redis.Redis.from_url(url)


def url_of(connection: redis.Redis, user: str | None = None) -> str:
    kwargs = connection.connection_pool.connection_kwargs
    auth = f"{user}:{user}-password@" if user else ""
    return f"redis://{auth}{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def start_clock(url: str) -> multiprocessing.Process:
    process = multiprocessing.get_context("fork").Process(
        target=run_clock, args=(url, 60, os.getpid(), 60.0), daemon=True
    )
    process.start()
    return process


@pytest.fixture
def clock(coarse_redis: redis.Redis) -> Iterator[None]:
    process = start_clock(url_of(coarse_redis))
    deadline = time.monotonic() + 10
    while not coarse_redis.pubsub_numsub(ReleaseSchedule(coarse_redis).nudge_channel)[0][1]:
        assert time.monotonic() < deadline, "the clock never subscribed"
        time.sleep(0.01)
    yield
    process.terminate()
    process.join(5)


def promoted_after(connection: redis.Redis, queue_id: int) -> float:
    """Seconds until the queue's release job is pushed onto the `releases` queue. Waits in a
    BLPOP, which a push ends at once: polling would keep the server's event loop awake, and an
    idle server is the one whose blocking timeouts fire late."""
    started = time.monotonic()
    popped = connection.blpop([f"rq:queue:{RELEASES_QUEUE}"], timeout=5)
    assert popped is not None, f"queue {queue_id} was not promoted within 5 s"
    assert popped[1] == f"release-{queue_id}".encode(), popped
    return time.monotonic() - started


def test_a_wake_up_is_promoted_when_due_not_on_the_servers_timer(coarse_redis, clock):
    schedule = ReleaseSchedule(coarse_redis)
    for queue_id, delay in ((1, 0.25), (2, 0.4), (3, 0.15)):
        schedule.wake([queue_id], delay)
        waited = promoted_after(coarse_redis, queue_id)
        # On the server's 1 s timer this waited up to `delay` + 1 s (0.4 s: 0.4 to 1.4 s).
        assert delay - 0.01 <= waited <= delay + 0.1, (queue_id, delay, waited)


def test_a_new_wake_up_ends_the_clocks_sleep(coarse_redis, clock):
    schedule = ReleaseSchedule(coarse_redis)
    schedule.wake([1], 30)  # the clock now sleeps as long as it may
    time.sleep(0.1)
    schedule.wake([2])
    assert promoted_after(coarse_redis, 2) < 0.1


def test_the_clock_subscribes_again_after_losing_its_connection(coarse_redis, clock):
    schedule = ReleaseSchedule(coarse_redis)
    assert coarse_redis.client_kill_filter(_type="pubsub") >= 1
    time.sleep(0.3)
    schedule.wake([4], 0.5)
    assert promoted_after(coarse_redis, 4) < 2.0  # heard again, at worst after a retry pause
    schedule.wake([5], 0.2)
    assert 0.19 <= promoted_after(coarse_redis, 5) <= 0.3  # and on time again


def test_a_redis_user_without_channel_access_still_gets_its_wake_ups(coarse_redis):
    coarse_redis.acl_setuser(
        "clock",
        enabled=True,
        passwords=["+clock-password"],
        keys=["*"],
        commands=["+@all"],
        reset_channels=True,
    )
    limited = redis.Redis.from_url(url_of(coarse_redis, "clock"))
    process = start_clock(url_of(coarse_redis, "clock"))
    try:
        schedule = ReleaseSchedule(limited)
        schedule.wake([6], 0.3)  # no nudge can be published; the wake-up is stored all the same
        waited = promoted_after(coarse_redis, 6)
        assert 0.29 <= waited <= 0.3 + POLL_SECONDS + 0.1, waited
        assert coarse_redis.pubsub_numsub(schedule.nudge_channel)[0][1] == 0  # it polled
    finally:
        process.terminate()
        process.join(5)
