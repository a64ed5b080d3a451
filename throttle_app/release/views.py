"""Config API: operators' rate overrides, behind `Authorization: Bearer <CONFIG_API_TOKEN>`."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable

from flask import Blueprint, jsonify, request

from throttle_app.extensions import current_settings, db
from throttle_app.http_api import bearer_required, json_error
from throttle_app.input_fields import storable_text
from throttle_app.release.overrides import (
    config_as_json,
    find_config,
    upsert_config,
    validate_config,
)

bp = Blueprint("config_api", __name__)


def bearer_token_matches(expected: str | None) -> bool:
    """Constant-time check of the request's bearer token; no expected token means closed."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not expected or scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


def require_config_token(view: Callable) -> Callable:
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        expected = current_settings().config_api_token
        if not expected:
            return json_error(403, "the config API is closed: CONFIG_API_TOKEN is not set")
        if not bearer_token_matches(expected):
            return bearer_required("throttle-config")
        return view(*args, **kwargs)

    return guarded


@bp.post("/api/config")
@require_config_token
def upsert():
    payload = request.get_json(silent=True)
    values, errors = validate_config(payload)
    if errors:
        return jsonify({"error": "invalid config", "errors": errors}), 422
    config = upsert_config(db.session, values)
    db.session.commit()
    return jsonify(config_as_json(config))


@bp.get("/api/config/<int:portal_id>/<action_id>")
@require_config_token
def show(portal_id: int, action_id: str):
    # No such config can exist (and PostgreSQL would refuse the query): a 404, not a 500.
    config = find_config(db.session, portal_id, action_id) if storable_text(action_id) else None
    if config is None:
        return json_error(404, f"no config for portal {portal_id} action {action_id}")
    return jsonify(config_as_json(config))
