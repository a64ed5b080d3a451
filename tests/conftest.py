"""Shared fixtures: real PostgreSQL and real Redis, never fakes.

TEST_DATABASE_URL (default: the `throttle_test` database on 127.0.0.1) and TEST_REDIS_URL
(default: Redis database 15 on 127.0.0.1) point the suite at its services.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_url() -> str:
    return TEST_REDIS_URL


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    """A real Redis connection on the test database, emptied before each test."""
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.close()
