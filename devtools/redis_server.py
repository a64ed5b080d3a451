"""A Redis server of its own on a free loopback port, for runs that must not touch the shared
server (FLUSHALL, server options such as `--hz 1`, a stack that empties its database)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis

from devtools.ports import free_port


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate, its key and the CA that signed it (PEM files)."""

    cert: Path
    key: Path
    ca: Path


@contextlib.contextmanager
def private_redis(
    directory: Path, *options: str, password: str | None = None, tls: TlsFiles | None = None
) -> Iterator[str]:
    """Start `redis-server` (no persistence, its log in `directory`/redis.log) and yield its URL
    once it answers PING; stopped (SIGTERM) when the block ends. RuntimeError when redis-server
    is not installed or does not answer within 10 s.

    `password`: the server requires AUTH and the URL carries it. `tls`: the server speaks only
    TLS with these files; the URL is `rediss://...?ssl_ca_certs=<the CA>`, so a client verifies
    the certificate and the host name as it would in production."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is missing: bash scripts/services.sh installs it")
    port = free_port()
    listen = ["--port", str(port)]
    scheme, query = "redis", ""
    if tls is not None:
        listen = ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"]
        listen += ["--tls-cert-file", str(tls.cert), "--tls-key-file", str(tls.key)]
        listen += ["--tls-ca-cert-file", str(tls.ca)]
        scheme, query = "rediss", f"?ssl_ca_certs={tls.ca}"
    if password:
        listen += ["--requirepass", password]
    argv = [server, "--bind", "127.0.0.1", *listen, "--save", "", "--appendonly"]
    with open(directory / "redis.log", "wb") as log:
        process = subprocess.Popen(
            [*argv, "no", *options], cwd=directory, stdout=log, stderr=subprocess.STDOUT
        )
    auth = f":{quote(password, safe='')}@" if password else ""
    url = f"{scheme}://{auth}127.0.0.1:{port}/0{query}"
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
