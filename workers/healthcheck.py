"""`python -m workers.healthcheck [--scheduler]`: liveness of this host's RQ worker or scheduler.

The Helm chart runs it as the exec liveness probe of the worker and scheduler pods. It reads only
REDIS_URL (no database, no other setting: a probe must not depend on every secret being in
place), answers within 10 seconds, and exits 0 when healthy, or 1 with one line on stderr.
Redis itself unreachable or hung is exit 0 (with a line saying so): a restart cannot fix it, RQ
reconnects by itself, and pods restarted meanwhile would crash-loop and start late once Redis is
back.

Without a flag: an RQ worker registered from this host (its `hostname` field equals
`socket.gethostname()`) is alive: its `rq:worker:<name>` hash still exists and has no `death`
field. RQ writes `last_heartbeat` and sets the key's expiry to the worker's TTL on every
heartbeat (`worker_ttl + 60`, or the job timeout + 60 while it runs a job), so an existing key
means the last heartbeat is within that TTL. A hung worker stops heartbeating and its key
expires; a worker that stopped registers its death.

With --scheduler: the rq-scheduler instance of this host is alive. rq-scheduler 0.14 stores
only `birth` (and `death` on a clean exit) in `rq:scheduler_instance:<name>` and renews the
key's expiry (poll interval + 10 s) on every loop, so a live instance is a key that exists
without `death`. rq-scheduler names instances with a bare uuid that says nothing about the
host: workers/scheduler.py should name them with `scheduler_instance_name()` below
(`<hostname>:<pid>:<random>`), and then only an instance of this host counts. Instances with
bare uuid names (schedulers started without that name) are attributed to no host; one of them
alive is accepted only when no host-named instance is alive for this host, which is the same
answer when the deployment runs a single scheduler (the chart runs exactly one).

The Redis key names are RQ's and rq-scheduler's (tests/ops/test_healthcheck.py checks them
against the installed packages). They are kept here so the probe imports only redis-py, not
rq and rq_scheduler as well (docs/measurements.md has the import time saved).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

import redis

DEADLINE_SECONDS = 10
REDIS_TIMEOUT_SECONDS = 3.0
WORKERS_KEY = "rq:workers"  # rq.worker_registration.REDIS_WORKER_KEYS
WORKER_PREFIX = "rq:worker:"  # rq.Worker.redis_worker_namespace_prefix
# rq_scheduler.Scheduler.redis_scheduler_namespace_prefix
SCHEDULER_PREFIX = "rq:scheduler_instance:"


class Unhealthy(Exception):
    """The probe's answer is "not alive"; the message is the one line for stderr."""


class _DeadlinePassed(BaseException):
    """Raised by SIGALRM. A BaseException, so that redis-py's handling of socket timeouts
    (TimeoutError) can neither swallow it nor retry after it."""


def scheduler_instance_name(hostname: str | None = None, pid: int | None = None) -> str:
    """A name for an rq-scheduler instance that says which host runs it.

    A hostname never contains ':', so `<hostname>:` is an exact prefix. The random part keeps a
    restarted process (often PID 1 again, in a container) clear of its predecessor's key,
    which rq-scheduler refuses to reuse until it expires.
    """
    host = hostname if hostname is not None else socket.gethostname()
    return f"{host}:{pid if pid is not None else os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Instance:
    name: str
    hostname: str | None
    ttl_ms: int
    dead: bool
    last_heartbeat: datetime | None = None

    @property
    def alive(self) -> bool:
        return not self.dead and self.ttl_ms > 0


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _parse_time(value: str | None) -> datetime | None:
    """RQ's utcformat ('2026-01-02T03:04:05.678901Z'); None when missing or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def workers(connection: redis.Redis) -> list[Instance]:
    """Every RQ worker in the registry whose key still exists (dead ones included)."""
    keys = sorted(_text(key) or "" for key in connection.smembers(WORKERS_KEY))
    pipe = connection.pipeline(transaction=False)
    for key in keys:
        pipe.hmget(key, ["hostname", "last_heartbeat", "death"])
        pipe.pttl(key)
    answers = pipe.execute()
    found = []
    for index, key in enumerate(keys):
        if int(answers[2 * index + 1]) == -2:
            continue  # expired: a registry entry RQ has not cleaned up yet
        hostname, heartbeat, death = (_text(v) for v in answers[2 * index])
        found.append(
            Instance(
                name=key.removeprefix(WORKER_PREFIX),
                hostname=hostname,
                ttl_ms=int(answers[2 * index + 1]),
                dead=death is not None,
                last_heartbeat=_parse_time(heartbeat),
            )
        )
    return found


def schedulers(connection: redis.Redis) -> list[Instance]:
    """Every rq-scheduler instance key; the host is read from the name when it carries one."""
    keys = sorted(_text(k) or "" for k in connection.scan_iter(SCHEDULER_PREFIX + "*", 500))
    pipe = connection.pipeline(transaction=False)
    for key in keys:
        pipe.hexists(key, "death")
        pipe.pttl(key)
    answers = pipe.execute()
    found = []
    for index, key in enumerate(keys):
        name = key.removeprefix(SCHEDULER_PREFIX)
        host = name.split(":", 1)[0] if ":" in name else None
        found.append(
            Instance(
                name=name,
                hostname=host,
                ttl_ms=int(answers[2 * index + 1]),
                dead=bool(answers[2 * index]),
            )
        )
    return found


def check_worker(connection: redis.Redis, hostname: str) -> str:
    """The ok line for a live worker of `hostname`; Unhealthy otherwise."""
    everyone = workers(connection)
    mine = [w for w in everyone if w.hostname == hostname]
    live = [w for w in mine if w.alive]
    if not live:
        if mine:
            raise Unhealthy(
                f"no live RQ worker on {hostname}: {len(mine)} registered, none with a "
                "heartbeat within its TTL"
            )
        raise Unhealthy(f"no RQ worker registered on {hostname} ({len(everyone)} on other hosts)")
    worker = max(live, key=lambda w: w.last_heartbeat or datetime.min.replace(tzinfo=UTC))
    age = ""
    if worker.last_heartbeat is not None:
        seconds = (datetime.now(UTC) - worker.last_heartbeat).total_seconds()
        age = f", last heartbeat {max(0.0, seconds):.0f}s ago"
    return f"ok: RQ worker {worker.name} on {hostname}{age}"


def check_scheduler(connection: redis.Redis, hostname: str) -> str:
    """The ok line for a live rq-scheduler of `hostname`; Unhealthy otherwise."""
    everyone = schedulers(connection)
    live = [s for s in everyone if s.alive]
    mine = [s for s in live if s.hostname == hostname]
    if mine:
        return f"ok: rq-scheduler {mine[0].name} is alive"
    unnamed = [s for s in live if s.hostname is None]
    if unnamed:
        return f"ok: rq-scheduler {unnamed[0].name} is alive (its name carries no host)"
    others = len([s for s in live if s.hostname is not None])
    raise Unhealthy(f"no live rq-scheduler on {hostname} ({others} alive on other hosts)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.healthcheck",
        description="Exit 0 when this host's RQ worker (or, with --scheduler, its rq-scheduler) "
        "is alive; else 1 with one line on stderr. Reads REDIS_URL.",
    )
    parser.add_argument("--scheduler", action="store_true", help="check the rq-scheduler")
    return parser


def _deadline(signum: int, frame: FrameType | None) -> None:
    raise _DeadlinePassed


def probe(scheduler: bool, env: Mapping[str, str]) -> str:
    """The ok line; raises Unhealthy with the reason."""
    url = env.get("REDIS_URL", "").strip()
    if not url:
        raise Unhealthy("REDIS_URL is not set")
    try:
        connection = redis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
    except ValueError as exc:  # a malformed URL; its text may hold a password, so not shown
        raise Unhealthy(f"REDIS_URL is not a usable Redis URL ({type(exc).__name__})") from None
    hostname = socket.gethostname()
    try:
        if scheduler:
            return check_scheduler(connection, hostname)
        return check_worker(connection, hostname)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Not this process's fault, and a restart cannot fix it: RQ reconnects by itself, while
        # restarted pods could not even register and would crash-loop after Redis is back.
        name = type(exc).__name__
        return f"Redis unreachable ({name}): not a reason to restart the {_what(scheduler)}"
    except redis.RedisError as exc:
        raise Unhealthy(f"Redis unavailable: {type(exc).__name__}: {exc}") from None
    finally:
        connection.close()


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    previous = signal.signal(signal.SIGALRM, _deadline)
    signal.alarm(DEADLINE_SECONDS)
    try:
        print(probe(args.scheduler, os.environ if env is None else env))
        return 0
    except Unhealthy as exc:
        reason = str(exc)
    except _DeadlinePassed:  # a hung Redis: as unreachable, a restart would not help
        print(
            f"no answer from Redis within {DEADLINE_SECONDS}s: not a reason to restart the "
            f"{_what(args.scheduler)}"
        )
        return 0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    print(f"healthcheck ({_what(args.scheduler)}): {' '.join(reason.split())}", file=sys.stderr)
    return 1


def _what(scheduler: bool) -> str:
    return "scheduler" if scheduler else "worker"


if __name__ == "__main__":
    sys.exit(main())
