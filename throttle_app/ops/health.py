"""GET /api/live (the process answers), GET /api/ready (can take HubSpot's webhooks: the load
balancer's check) and GET /api/health (every dependency as this release expects it).

/api/ready needs only what intake needs: PostgreSQL, and a schema this code can write (CURRENT,
or AHEAD while a newer release rolls out or after a rollback). Redis is not required: without it
admissions still commit, and the cleaner restores their wake-ups. /api/health is the full
picture for people and monitors: database, schema at exactly this release's head, and Redis.

Each process runs the database check and the Redis check at most once per
``THROTTLE_HEALTH_CACHE_MS`` and answers every probe in between from that result, failures
included: probes and floods of anonymous health requests cost no query each, and a failure (or a
recovery) shows within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from flask import Blueprint, current_app, jsonify
from flask.blueprints import BlueprintSetupState

from throttle_app.extensions import db
from throttle_app.ops.readiness import BEHIND, CURRENT, check_database, check_redis
from throttle_app.services import current_services

__all__ = ["CachedCheck", "HealthChecks", "bp"]

T = TypeVar("T")
_EXTENSION_KEY = "throttle.health_checks"

bp = Blueprint("health", __name__)


class CachedCheck(Generic[T]):
    """The result of a check, reused for ``ttl_seconds`` after it was computed. Callers that
    arrive while it is being computed wait for that result instead of checking again (the lock
    is cooperative once gevent has patched ``threading``)."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._result: tuple[float, T] | None = None  # (valid until, value): one attribute

    def get(self, check: Callable[[], T]) -> T:
        """The cached result while it is fresh, else ``check()`` (run by one caller at a time)."""
        cached = self._result
        if cached is not None and self._clock() < cached[0]:
            return cached[1]
        with self._lock:
            cached = self._result
            if cached is not None and self._clock() < cached[0]:
                return cached[1]
            value = check()
            self._result = (self._clock() + self._ttl, value)
            return value


class HealthChecks:
    """One app's cached dependency checks."""

    def __init__(self, ttl_seconds: float) -> None:
        self.database: CachedCheck[tuple[bool, str, str | None]] = CachedCheck(ttl_seconds)
        self.redis: CachedCheck[tuple[bool, str | None]] = CachedCheck(ttl_seconds)


@bp.record
def _install_checks(state: BlueprintSetupState) -> None:
    ttl_seconds = state.app.config["THROTTLE_SETTINGS"].health_cache_ms / 1000
    state.app.extensions[_EXTENSION_KEY] = HealthChecks(ttl_seconds)


def _database() -> tuple[bool, str, str | None]:
    timeout = current_services().settings.health_timeout_seconds
    checks: HealthChecks = current_app.extensions[_EXTENSION_KEY]
    return checks.database.get(lambda: check_database(db.engine, timeout))


def _redis() -> tuple[bool, str | None]:
    client = current_services().redis
    checks: HealthChecks = current_app.extensions[_EXTENSION_KEY]
    return checks.redis.get(lambda: check_redis(client))


@bp.get("/api/live")
def live():
    return jsonify({"status": "ok"})


@bp.get("/api/ready")
def ready():
    database_ok, schema, reason = _database()
    body = {"status": "ok", "checks": {"database": database_ok, "schema": schema}}
    if not database_ok or schema == BEHIND:
        return jsonify({**body, "status": "unavailable", "error": reason}), 503
    return jsonify(body)


@bp.get("/api/health")
def health():
    database_ok, schema, db_reason = _database()
    redis_ok, redis_reason = _redis()
    checks = {"database": database_ok, "schema": schema == CURRENT, "redis": redis_ok}
    failures = [reason for reason in (db_reason, redis_reason) if reason]
    body = {"status": "ok" if not failures else "unavailable", "checks": checks}
    if failures:
        body["error"] = "; ".join(failures)
        return jsonify(body), 503
    return jsonify(body)
