"""The OAuth ``state``: random, bound to the browser, single-use, valid for 10 minutes.

`issue_state` makes 32 random bytes, stores their SHA-256 in Redis (``SET NX EX``, so the value
itself never sits in Redis) and signs the state (itsdangerous, SECRET_KEY, timestamped) for an
HttpOnly, SameSite=Lax cookie on ``/api/oauth/``. `consume_state` requires the callback's
``state`` to equal the cookie's (constant time), the cookie's signature to be valid and younger
than the TTL, and then removes the Redis entry with one ``GETDEL``: a second use finds nothing.
The cookie is checked before Redis is touched, so a forged callback cannot burn a real state.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

import redis
from flask import Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from throttle_app.config import Settings

__all__ = [
    "COOKIE_NAME",
    "IssuedState",
    "StateError",
    "clear_state_cookie",
    "consume_state",
    "issue_state",
    "set_state_cookie",
]

COOKIE_NAME = "throttle_oauth_state"
COOKIE_PATH = "/api/oauth/"
MAX_STATE_LENGTH = 128
_SALT = "throttle.oauth-state.v1"
_KEY_PREFIX = "throttle:oauth:state:"

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


def _redis_key(state: str) -> str:
    return _KEY_PREFIX + hashlib.sha256(state.encode()).hexdigest()


def issue_state(conn: redis.Redis, settings: Settings) -> IssuedState:
    """A fresh state, remembered in Redis for ``oauth_state_ttl_seconds``."""
    for _ in range(3):
        value = secrets.token_urlsafe(32)
        if conn.set(_redis_key(value), b"1", nx=True, ex=settings.oauth_state_ttl_seconds):
            return IssuedState(value, _serializer(settings).dumps(value))
    raise RuntimeError("could not store a new OAuth state")  # 3 collisions of 256 random bits


def consume_state(
    conn: redis.Redis, settings: Settings, state: str | None, cookie: str | None
) -> None:
    """Accept ``state`` once, from the browser that started the install; else StateError."""
    if not state or not cookie:
        raise StateError("missing")
    if len(state) > MAX_STATE_LENGTH or len(cookie) > 4 * MAX_STATE_LENGTH:
        raise StateError("forged")
    try:
        # One second less than Redis's TTL: whole-second cookie ages then never accept a state
        # whose Redis entry has already expired, so "reused" below really means reused.
        max_age = max(1, settings.oauth_state_ttl_seconds - 1)
        bound = _serializer(settings).loads(cookie, max_age=max_age)
    except SignatureExpired:
        raise StateError("expired") from None
    except BadSignature:
        raise StateError("forged") from None
    if not isinstance(bound, str) or not hmac.compare_digest(bound.encode(), state.encode()):
        raise StateError("forged")
    if conn.getdel(_redis_key(state)) is None:
        raise StateError("reused")  # the cookie is within its TTL, so Redis forgot it on use


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
