"""TokenBucket on real Redis: burst, refill, waits, 429 blocks, NOSCRIPT, TTLs, many processes."""

from __future__ import annotations

import multiprocessing
import re
import time

import pytest
import redis

from throttle_app.hubspot.bucket import TokenBucket

PORTAL = 4242


def drain(bucket: TokenBucket, portal_id: int = PORTAL) -> int:
    taken = 0
    while bucket.take(portal_id) == 0:
        taken += 1
    return taken


def test_capacity_then_wait_of_one_interval(redis_conn: redis.Redis) -> None:
    bucket = TokenBucket(redis_conn, capacity=5, refill_per_second=2)
    assert [bucket.take(PORTAL) for _ in range(5)] == [0.0] * 5
    wait = bucket.take(PORTAL)
    assert 0.4 < wait <= 0.5
    # A refused take consumes nothing: the wait keeps shrinking, never grows.
    assert bucket.take(PORTAL) <= wait


def test_portals_are_independent(redis_conn: redis.Redis) -> None:
    bucket = TokenBucket(redis_conn, capacity=2, refill_per_second=1)
    assert drain(bucket, 1) == 2
    assert bucket.take(2) == 0.0


def test_refill_over_time(redis_conn: redis.Redis) -> None:
    bucket = TokenBucket(redis_conn, capacity=3, refill_per_second=10)
    assert drain(bucket) == 3
    time.sleep(0.25)  # 2.5 intervals of 100 ms
    assert bucket.take(PORTAL) == 0.0
    assert bucket.take(PORTAL) == 0.0
    assert 0 < bucket.take(PORTAL) <= 0.06


def test_refill_never_exceeds_capacity(redis_conn: redis.Redis) -> None:
    bucket = TokenBucket(redis_conn, capacity=3, refill_per_second=50)
    drain(bucket)
    time.sleep(0.2)  # 10 intervals, but the bucket holds 3
    assert drain(bucket) == 3


def test_sleeping_the_returned_wait_is_enough(redis_conn: redis.Redis) -> None:
    bucket = TokenBucket(redis_conn, capacity=2, refill_per_second=20)
    drain(bucket)
    for _ in range(4):
        wait = bucket.take(PORTAL)
        assert 0 < wait <= 0.05
        time.sleep(wait)
        assert bucket.take(PORTAL) == 0.0


def test_wait_time_peeks_without_consuming(redis_conn: redis.Redis) -> None:
    bucket = TokenBucket(redis_conn, capacity=2, refill_per_second=4)
    assert bucket.wait_time(PORTAL) == 0.0
    assert [bucket.wait_time(PORTAL) for _ in range(10)] == [0.0] * 10
    assert drain(bucket) == 2
    peek = bucket.wait_time(PORTAL)
    assert 0.2 < peek <= 0.25
    assert bucket.wait_time(PORTAL) <= peek
    assert abs(bucket.take(PORTAL) - peek) < 0.02


def test_block_empties_the_bucket_for_every_client(redis_conn: redis.Redis, redis_url: str) -> None:
    bucket = TokenBucket(redis_conn, capacity=5, refill_per_second=20)
    other_client = redis.Redis.from_url(redis_url)
    other = TokenBucket(other_client, capacity=5, refill_per_second=20)
    try:
        bucket.block(PORTAL, 0.3)
        assert 0.25 < bucket.take(PORTAL) <= 0.3
        assert 0.25 < other.take(PORTAL) <= 0.3
        assert 0.25 < other.wait_time(PORTAL) <= 0.3
        bucket.block(PORTAL, 0.05)  # shorter: must not shorten the block
        wait = other.take(PORTAL)
        assert 0.2 < wait <= 0.3
        time.sleep(wait)
        # Refill from empty: one token at the end of the block, the next one interval later.
        assert other.take(PORTAL) == 0.0
        assert 0.03 < bucket.take(PORTAL) <= 0.05
    finally:
        other_client.close()


def test_longer_block_extends_and_block_zero_empties(redis_conn: redis.Redis) -> None:
    bucket = TokenBucket(redis_conn, capacity=5, refill_per_second=20)
    bucket.block(PORTAL, 0.1)
    bucket.block(PORTAL, 2)
    assert 1.9 < bucket.take(PORTAL) <= 2.0
    redis_conn.flushdb()
    bucket.block(PORTAL, 0)  # a 429 without Retry-After: at most one token now, then refill
    assert bucket.take(PORTAL) == 0.0
    assert 0.03 < bucket.take(PORTAL) <= 0.05
    with pytest.raises(ValueError):
        bucket.block(PORTAL, -1)
    with pytest.raises(ValueError):
        bucket.block(PORTAL, float("nan"))


def test_script_flush_between_calls(redis_conn: redis.Redis) -> None:
    bucket = TokenBucket(redis_conn, capacity=3, refill_per_second=1)
    assert bucket.take(PORTAL) == 0.0
    redis_conn.script_flush()
    assert bucket.take(PORTAL) == 0.0
    redis_conn.script_flush()
    assert bucket.wait_time(PORTAL) == 0.0
    redis_conn.script_flush()
    bucket.block(PORTAL, 1)
    assert bucket.take(PORTAL) > 0.9


def test_keys_are_hash_tagged_integers_with_ttl(redis_conn: redis.Redis) -> None:
    bucket = TokenBucket(redis_conn, capacity=10, refill_per_second=9.5)
    bucket.take(PORTAL)
    assert redis_conn.keys("*") == [b"throttle:bucket:{4242}"]
    assert bucket.key(PORTAL) == "throttle:bucket:{4242}"
    # Integer microseconds, never Lua's 14-digit "1.7e+15" rendering.
    assert re.fullmatch(rb"\d{16}", redis_conn.get(bucket.key(PORTAL)))
    assert 0 < redis_conn.pttl(bucket.key(PORTAL)) <= 107
    bucket.block(PORTAL, 5)
    assert 5000 < redis_conn.pttl(bucket.key(PORTAL)) <= 5000 + 9 * 106 + 1
    custom = TokenBucket(redis_conn, capacity=1, refill_per_second=1, key_prefix="t:b")
    assert custom.key(7) == "t:b:{7}"


def test_idle_key_expires_once_the_bucket_is_full(redis_conn: redis.Redis) -> None:
    bucket = TokenBucket(redis_conn, capacity=2, refill_per_second=50)
    drain(bucket)
    time.sleep(0.08)
    assert redis_conn.exists(bucket.key(PORTAL)) == 0
    assert drain(bucket) == 2


def test_acquire_sleeps_the_wait_or_gives_up(redis_conn: redis.Redis) -> None:
    bucket = TokenBucket(redis_conn, capacity=1, refill_per_second=10)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    assert bucket.acquire(PORTAL, max_wait=0, sleep=sleep) is True
    assert bucket.acquire(PORTAL, max_wait=0.05, sleep=sleep) is False
    assert slept == []
    assert bucket.acquire(PORTAL, max_wait=1, sleep=sleep) is True
    assert len(slept) == 1 and 0.04 < slept[0] <= 0.1


@pytest.mark.parametrize(
    ("capacity", "rate"),
    [(0, 1), (-1, 1), (1.5, 1), (True, 1), (1, 0), (1, -2), (1, float("inf")), (1, float("nan"))],
)
def test_constructor_validation(redis_conn: redis.Redis, capacity: object, rate: object) -> None:
    with pytest.raises(ValueError):
        TokenBucket(redis_conn, capacity, rate)  # type: ignore[arg-type]


def _hammer(redis_url: str, capacity: int, rate: float, duration: float, barrier, results) -> None:
    client = redis.Redis.from_url(redis_url)
    bucket = TokenBucket(client, capacity, rate)
    bucket.wait_time(PORTAL)  # connect and load the script without consuming
    barrier.wait(timeout=30)
    first = time.monotonic()
    granted = calls = 0
    while time.monotonic() < first + duration:
        calls += 1
        if bucket.take(PORTAL) == 0.0:
            granted += 1
    last = time.monotonic()
    results.put((granted, calls, first, last))
    client.close()


def test_many_processes_never_exceed_the_allowance(redis_url: str, redis_conn: redis.Redis) -> None:
    capacity, rate, procs, duration = 5, 40.0, 6, 2.0
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [
        ctx.Process(target=_hammer, args=(redis_url, capacity, rate, duration, barrier, results))
        for _ in range(procs)
    ]
    for worker in workers:
        worker.start()
    rows = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0
    granted = sum(row[0] for row in rows)
    calls = sum(row[1] for row in rows)
    elapsed = max(row[3] for row in rows) - min(row[2] for row in rows)
    allowance = capacity + rate * elapsed
    print(f"granted={granted} calls={calls} elapsed={elapsed:.3f}s allowance={allowance:.1f}")
    assert calls > granted * 3  # the bucket really was contended
    assert granted <= allowance + 1
    assert granted >= 0.9 * allowance


def test_cap_leaves_at_most_that_many_tokens_and_never_adds_any(redis_conn: redis.Redis) -> None:
    bucket = TokenBucket(redis_conn, capacity=10, refill_per_second=1)
    bucket.cap(PORTAL, 3)  # HubSpot: 3 calls left in its window
    assert drain(bucket) == 3
    bucket.cap(PORTAL, 5)  # never loosens: still empty
    assert bucket.take(PORTAL) > 0.9
    bucket.cap(PORTAL + 1, 10)  # at or over the capacity: nothing to tighten
    assert drain(bucket, PORTAL + 1) == 10
    with pytest.raises(ValueError):
        bucket.cap(PORTAL, 0)  # none left is a block
