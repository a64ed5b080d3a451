"""GET /api/live (the process answers), GET /api/ready (can take HubSpot's webhooks: the load
balancer's check) and GET /api/health (every dependency as this release expects it).

/api/ready needs only what intake needs: PostgreSQL, and a schema this code can write (CURRENT,
or AHEAD while a newer release rolls out or after a rollback). Redis is not required: without it
admissions still commit, and the cleaner restores their wake-ups. /api/health is the full
picture for people and monitors: database, schema at exactly this release's head, and Redis.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from throttle_app.extensions import db
from throttle_app.ops.readiness import BEHIND, CURRENT, check_database, check_redis
from throttle_app.services import current_services

bp = Blueprint("health", __name__)


@bp.get("/api/live")
def live():
    return jsonify({"status": "ok"})


@bp.get("/api/ready")
def ready():
    timeout = current_services().settings.health_timeout_seconds
    database_ok, schema, reason = check_database(db.engine, timeout)
    body = {"status": "ok", "checks": {"database": database_ok, "schema": schema}}
    if not database_ok or schema == BEHIND:
        return jsonify({**body, "status": "unavailable", "error": reason}), 503
    return jsonify(body)


@bp.get("/api/health")
def health():
    settings = current_services().settings
    database_ok, schema, db_reason = check_database(db.engine, settings.health_timeout_seconds)
    redis_ok, redis_reason = check_redis(current_services().redis)
    checks = {"database": database_ok, "schema": schema == CURRENT, "redis": redis_ok}
    failures = [reason for reason in (db_reason, redis_reason) if reason]
    body = {"status": "ok" if not failures else "unavailable", "checks": checks}
    if failures:
        body["error"] = "; ".join(failures)
        return jsonify(body), 503
    return jsonify(body)
