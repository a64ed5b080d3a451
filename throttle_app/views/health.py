"""GET /api/live (the process answers) and GET /api/health (ready to take traffic)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from throttle_app.extensions import current_settings, db, redis_client
from throttle_app.readiness import check_database, check_redis

bp = Blueprint("health", __name__)


@bp.get("/api/live")
def live():
    return jsonify({"status": "ok"})


@bp.get("/api/health")
def health():
    settings = current_settings()
    database_ok, schema_ok, db_reason = check_database(db.engine, settings.health_timeout_seconds)
    redis_ok, redis_reason = check_redis(redis_client())
    checks = {"database": database_ok, "schema": schema_ok, "redis": redis_ok}
    failures = [reason for reason in (db_reason, redis_reason) if reason]
    body = {"status": "ok" if not failures else "unavailable", "checks": checks}
    if failures:
        body["error"] = "; ".join(failures)
        return jsonify(body), 503
    return jsonify(body)
