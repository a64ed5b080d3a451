"""The OAuth ``state``: random, bound to the browser, single-use, valid for 10 minutes, and kept
nowhere on the server until the callback.

`issue_state` makes 32 random bytes (the state HubSpot carries back) and signs them, with a
timestamp, into an HttpOnly, SameSite=Lax cookie on ``/api/oauth/`` (itsdangerous, SECRET_KEY).
Nothing is stored: an anonymous ``authorize`` costs a signature, not a Redis key.

`consume_state` requires the callback's ``state`` to equal the cookie's (constant time), the
cookie's signature to be valid and younger than the TTL, and then marks the state used with one
``SET NX`` of its SHA-256 (the value itself never sits in Redis), expiring just after the cookie
would: a second use finds the mark. The cookie is checked before Redis is touched, so a forged
callback writes nothing and cannot burn a real state. Redis therefore holds at most one small key
per callback that carried a browser's valid state, each gone once that state has expired anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass, field

import redis
from flask import Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from throttle_app.config import Settings

__all__ = [
    "COOKIE_NAME",
    "IssuedState",
    "StateError",
    "check_store",
    "clear_state_cookie",
    "consume_state",
    "issue_state",
    "set_state_cookie",
    "used_key",
]

COOKIE_NAME = "throttle_oauth_state"
COOKIE_PATH = "/api/oauth/"
MAX_STATE_LENGTH = 128
_SALT = "throttle.oauth-state.v1"
_USED_PREFIX = "throttle:oauth:used-state:"

MESSAGES = {
    "missing": "This install link is incomplete, or it was opened in a different browser than "
    "the one that started the install (or cookies are blocked).",
    "expired": "This install took longer than the allowed time and has expired.",
    "reused": "This install link has already been used.",
    "forged": "This install link could not be verified.",
}


class StateError(Exception):
    """The callback's state is refused. ``reason``: missing, expired, reused or forged."""

    def __init__(self, reason: str) -> None:
        super().__init__(MESSAGES[reason])
        self.reason = reason


@dataclass(frozen=True)
class IssuedState:
    """A new state: ``value`` goes to HubSpot, ``cookie`` (signed) to the browser."""

    value: str = field(repr=False)
    cookie: str = field(repr=False)


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=_SALT)


def used_key(state: str) -> str:
    """The Redis key that marks ``state`` as used (its SHA-256, never the value)."""
    return _USED_PREFIX + hashlib.sha256(state.encode()).hexdigest()


def issue_state(settings: Settings) -> IssuedState:
    """A fresh state and its signed cookie; nothing is stored."""
    value = secrets.token_urlsafe(32)
    return IssuedState(value, _serializer(settings).dumps(value))


def check_store(conn: redis.Redis) -> None:
    """Raise RedisError when the store that marks states used does not answer (a PING, no
    write), so an install that could not finish is refused before the admin consents."""
    conn.ping()


def consume_state(
    conn: redis.Redis, settings: Settings, state: str | None, cookie: str | None
) -> None:
    """Accept ``state`` once, from the browser that started the install; else StateError."""
    if not state or not cookie:
        raise StateError("missing")
    if len(state) > MAX_STATE_LENGTH or len(cookie) > 4 * MAX_STATE_LENGTH:
        raise StateError("forged")
    ttl = settings.oauth_state_ttl_seconds
    try:
        bound, signed_at = _serializer(settings).loads(cookie, max_age=ttl, return_timestamp=True)
    except SignatureExpired:
        raise StateError("expired") from None
    except BadSignature:
        raise StateError("forged") from None
    if not isinstance(bound, str) or not hmac.compare_digest(bound.encode(), state.encode()):
        raise StateError("forged")
    # itsdangerous stamps whole seconds and accepts an age of up to `ttl` whole seconds, so the
    # cookie is accepted until signed_at + ttl + 1; the mark outlives that by a second.
    accepted_until = signed_at.timestamp() + ttl + 1
    keep = max(1, math.ceil(accepted_until + 1 - time.time()))
    if not conn.set(used_key(state), b"1", nx=True, ex=keep):
        raise StateError("reused")


def set_state_cookie(
    response: Response, issued: IssuedState, settings: Settings, secure: bool
) -> None:
    """Bind the state to this browser."""
    response.set_cookie(
        COOKIE_NAME,
        issued.cookie,
        max_age=settings.oauth_state_ttl_seconds,
        path=COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="Lax",
    )


def clear_state_cookie(response: Response, secure: bool) -> None:
    """Forget the state cookie (every callback answer does this)."""
    response.delete_cookie(
        COOKIE_NAME, path=COOKIE_PATH, secure=secure, httponly=True, samesite="Lax"
    )
