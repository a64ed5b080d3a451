"""The operator credentials (THROTTLE_DASHBOARD_USERNAME / THROTTLE_DASHBOARD_PASSWORD), checked
by HTTP basic auth on every operator surface: rq-dashboard (dashboard.py) and /ops (ops_page.py).
One check, in constant time."""

from __future__ import annotations

import hmac

from flask import Response, jsonify, request


def credentials_match(username: str, password: str) -> bool:
    """True when the request's basic-auth credentials are `username` and `password`. Both
    comparisons always run, in constant time: the answer's timing says nothing about which one
    failed, nor how much of either matched."""
    auth = request.authorization
    given_user = given_password = b""
    if auth is not None and auth.type == "basic":
        given_user = (auth.username or "").encode()
        given_password = (auth.password or "").encode()
    user_ok = hmac.compare_digest(given_user, username.encode())
    password_ok = hmac.compare_digest(given_password, password.encode())
    return user_ok and password_ok


def challenge(realm: str) -> Response:
    """401 asking the browser for the operator credentials."""
    response = jsonify({"error": "authentication required"})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = f'Basic realm="{realm}", charset="UTF-8"'
    return response
