"""Config API: operators' rate overrides, behind `Authorization: Bearer <CONFIG_API_TOKEN>`."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from throttle_app.config import Settings
from throttle_app.extensions import db
from throttle_app.http_api import config_token_guard, json_error
from throttle_app.input_fields import storable_text
from throttle_app.release.overrides import (
    config_as_json,
    find_config,
    upsert_config,
    validate_config,
)


def blueprint(settings: Settings) -> Blueprint:
    """POST /api/config and GET /api/config/<portal_id>/<action_id>."""
    bp = Blueprint("config_api", __name__)
    guard = config_token_guard(settings.config_api_token)
    bp.add_url_rule("/api/config", "upsert", guard(upsert), methods=["POST"])
    bp.add_url_rule("/api/config/<int:portal_id>/<action_id>", "show", guard(show))
    return bp


def upsert() -> tuple[Response, int] | Response:
    payload = request.get_json(silent=True)
    values, errors = validate_config(payload)
    if errors:
        return jsonify({"error": "invalid config", "errors": errors}), 422
    config = upsert_config(db.session, values)
    db.session.commit()
    return jsonify(config_as_json(config))


def show(portal_id: int, action_id: str) -> tuple[Response, int] | Response:
    # No such config can exist (and PostgreSQL would refuse the query): a 404, not a 500.
    config = find_config(db.session, portal_id, action_id) if storable_text(action_id) else None
    if config is None:
        return json_error(404, f"no config for portal {portal_id} action {action_id}")
    return jsonify(config_as_json(config))
