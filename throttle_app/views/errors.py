"""The one shape of every error answer: `{"error": "...", ...}` with a 4xx/5xx status."""

from __future__ import annotations

from flask import Response, jsonify


def json_error(status: int, message: str, **extra: object) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status
