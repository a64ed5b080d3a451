"""What every JSON API view shares: the error shape `{"error": ...}` and bearer-token auth."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import Response, jsonify, request


def json_error(status: int, message: str, **extra: object) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status


def bearer_required(realm: str) -> tuple[Response, int]:
    """401 for a missing or wrong bearer token, with the challenge naming `realm`."""
    response, status = json_error(401, "a valid bearer token is required")
    response.headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return response, status


def bearer_token_matches(expected: str | None) -> bool:
    """Constant-time check of the request's bearer token; no expected token means closed."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not expected or scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


def config_token_guard(expected: str | None) -> Callable[[Callable], Callable]:
    """A decorator for views behind CONFIG_API_TOKEN: closed (403) when no token is set, 401
    for a wrong or missing bearer token."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not expected:
                return json_error(403, "the config API is closed: CONFIG_API_TOKEN is not set")
            if not bearer_token_matches(expected):
                return bearer_required("throttle-config")
            return view(*args, **kwargs)

        return guarded

    return decorate
