"""keep_running: a worker or the scheduler outlives a Redis outage, and still ends on request
and gives up on a Redis that never comes back (the fault suite restarts a real Redis under the
real processes: tests/faults/test_redis_restart.py)."""

from __future__ import annotations

import pytest
import redis

from workers.outage import GIVE_UP_SECONDS, MAX_DELAY_SECONDS, keep_running


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def runs(clock: Clock, outcomes: list, lasting: float = 1.0):
    """A run that takes `lasting` seconds and then returns or raises the next outcome."""
    remaining = list(outcomes)

    def run() -> bool:
        clock.now += lasting
        outcome = remaining.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return run


def test_a_redis_error_starts_a_fresh_run_until_one_ends_on_request():
    clock = Clock()
    run = runs(clock, [redis.ConnectionError("gone"), redis.TimeoutError("slow"), False, True])
    keep_running(run, "worker", sleep=clock.sleep, clock=lambda: clock.now)
    assert clock.sleeps == [0.5, 1.0, 2.0]  # backing off while it keeps failing


def test_an_end_on_request_is_final():
    clock = Clock()
    keep_running(runs(clock, [True]), "scheduler", sleep=clock.sleep, clock=lambda: clock.now)
    assert clock.sleeps == []


def test_a_long_healthy_run_resets_the_back_off():
    clock = Clock()
    errors = [redis.ConnectionError("gone")] * 3
    keep_running(
        runs(clock, [*errors, True], lasting=120.0),
        "worker",
        sleep=clock.sleep,
        clock=lambda: clock.now,
    )
    assert clock.sleeps == [0.5, 0.5, 0.5]


def test_gives_up_when_redis_never_comes_back():
    clock = Clock()
    errors = [redis.ConnectionError("refused")] * 1000
    with pytest.raises(SystemExit) as exited:
        keep_running(runs(clock, errors), "worker", sleep=clock.sleep, clock=lambda: clock.now)
    assert exited.value.code == 1
    assert GIVE_UP_SECONDS <= clock.now < GIVE_UP_SECONDS + MAX_DELAY_SECONDS + 2
    assert max(clock.sleeps) == MAX_DELAY_SECONDS


def test_other_failures_and_signals_still_end_the_process():
    clock = Clock()
    with pytest.raises(ValueError):
        keep_running(runs(clock, [ValueError("bug")]), "worker", sleep=clock.sleep)
    with pytest.raises(SystemExit):
        keep_running(runs(clock, [SystemExit(0)]), "scheduler", sleep=clock.sleep)
