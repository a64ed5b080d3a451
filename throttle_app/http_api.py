"""The one shape of every error answer: `{"error": "...", ...}` with a 4xx/5xx status."""

from __future__ import annotations

from flask import Response, jsonify


def json_error(status: int, message: str, **extra: object) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status


def bearer_required(realm: str) -> tuple[Response, int]:
    """401 for a missing or wrong bearer token, with the challenge naming `realm`."""
    response, status = json_error(401, "a valid bearer token is required")
    response.headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return response, status
