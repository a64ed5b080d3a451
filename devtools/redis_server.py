"""A Redis server of its own on a free loopback port, for runs that must not touch the shared
server (FLUSHALL, server options such as `--hz 1`, a stack that empties its database)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from devtools.ports import free_port


@contextlib.contextmanager
def private_redis(directory: Path, *options: str) -> Iterator[str]:
    """Start `redis-server` (no persistence, its log in `directory`/redis.log) and yield its URL
    once it answers PING; stopped (SIGTERM) when the block ends. RuntimeError when redis-server
    is not installed or does not answer within 10 s."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is missing: bash scripts/services.sh installs it")
    port = free_port()
    argv = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly"]
    with open(directory / "redis.log", "wb") as log:
        process = subprocess.Popen(
            [*argv, "no", *options], cwd=directory, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for_ping(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _wait_for_ping(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"redis-server on {url} did not answer") from None
            time.sleep(0.05)
