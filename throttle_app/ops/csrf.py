"""CSRF tokens for the operator page's forms, tied to the operator's session.

The token lives in Flask's session (a cookie signed with SECRET_KEY, HttpOnly, SameSite=Lax) and
is repeated in each form; a POST is accepted only when the two match, compared in constant time.
A page on another site can make a logged-in operator's browser send the cookie and the basic-auth
credentials, but it cannot read the token to put in the form.
"""

from __future__ import annotations

import hmac
import secrets

from flask import session

SESSION_KEY = "ops_csrf"
FIELD = "csrf_token"
MAX_LENGTH = 128  # a longer field is refused before any comparison


def csrf_token() -> str:
    """This session's token, made on first use."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[SESSION_KEY] = token
    return token


def csrf_valid(given: str | None) -> bool:
    """True when `given` is this session's token (False without a session token)."""
    expected = session.get(SESSION_KEY)
    if not isinstance(expected, str) or not expected or not given or len(given) > MAX_LENGTH:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
