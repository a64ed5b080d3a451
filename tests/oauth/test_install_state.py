"""The OAuth state: random, browser-bound (signed cookie), single-use (Redis GETDEL), 10 minutes."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import pytest
import redis
from flask import Flask, Response
from itsdangerous import TimestampSigner

from throttle_app.config import Settings
from throttle_app.oauth.install_state import (
    COOKIE_NAME,
    StateError,
    consume_state,
    issue_state,
    set_state_cookie,
)


def state_key(state: str) -> str:
    return "throttle:oauth:state:" + hashlib.sha256(state.encode()).hexdigest()


def refused(conn: redis.Redis, settings: Settings, state, cookie) -> str:
    with pytest.raises(StateError) as caught:
        consume_state(conn, settings, state, cookie)
    return caught.value.reason


def test_state_is_random_and_stored_hashed_with_the_ttl(redis_conn, settings):
    first, second = issue_state(redis_conn, settings), issue_state(redis_conn, settings)
    assert first.value != second.value and len(first.value) >= 43  # 32 random bytes
    keys = [key.decode() for key in redis_conn.keys("throttle:oauth:state:*")]
    assert {state_key(first.value), state_key(second.value)} <= set(keys)
    assert not any(first.value in key or second.value in key for key in keys)
    assert 590 <= redis_conn.ttl(state_key(first.value)) <= 600
    assert first.value not in repr(first) and first.cookie not in repr(first)


def test_state_is_accepted_once(redis_conn, settings):
    issued = issue_state(redis_conn, settings)
    consume_state(redis_conn, settings, issued.value, issued.cookie)
    assert refused(redis_conn, settings, issued.value, issued.cookie) == "reused"


@pytest.mark.parametrize("state", [None, ""])
def test_missing_state_is_refused(redis_conn, settings, state):
    issued = issue_state(redis_conn, settings)
    assert refused(redis_conn, settings, state, issued.cookie) == "missing"
    consume_state(redis_conn, settings, issued.value, issued.cookie)  # not burnt


def test_missing_cookie_another_browser_is_refused_without_burning_the_state(redis_conn, settings):
    issued = issue_state(redis_conn, settings)
    assert refused(redis_conn, settings, issued.value, None) == "missing"
    consume_state(redis_conn, settings, issued.value, issued.cookie)


def test_forged_states_and_cookies_are_refused(redis_conn, settings):
    issued, other = issue_state(redis_conn, settings), issue_state(redis_conn, settings)
    tampered = issued.cookie[:-2] + ("AA" if not issued.cookie.endswith("AA") else "BB")
    foreign = dataclasses.replace(settings, secret_key="another-secret-key-entirely")
    foreign_cookie = issue_state(redis_conn, foreign).cookie
    assert refused(redis_conn, settings, issued.value, tampered) == "forged"
    assert refused(redis_conn, settings, issued.value, other.cookie) == "forged"
    assert refused(redis_conn, settings, "guessed-state", issued.cookie) == "forged"
    assert refused(redis_conn, settings, issued.value, foreign_cookie) == "forged"
    assert refused(redis_conn, settings, "x" * 500, issued.cookie) == "forged"
    assert refused(redis_conn, settings, issued.value, "x" * 5000) == "forged"
    consume_state(redis_conn, settings, issued.value, issued.cookie)  # forgeries burnt nothing


def test_an_old_cookie_is_expired(redis_conn, settings, monkeypatch):
    issued = issue_state(redis_conn, settings)
    later = int(time.time()) + settings.oauth_state_ttl_seconds + 1
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    assert refused(redis_conn, settings, issued.value, issued.cookie) == "expired"


def test_the_redis_entry_expires_with_the_ttl(redis_conn, settings):
    short = dataclasses.replace(settings, oauth_state_ttl_seconds=1)
    issued = issue_state(redis_conn, short)
    time.sleep(2.1)
    assert redis_conn.exists(state_key(issued.value)) == 0
    assert refused(redis_conn, short, issued.value, issued.cookie) == "expired"


def test_cookie_is_httponly_lax_scoped_and_short_lived(settings):
    app = Flask(__name__)
    with app.test_request_context():
        response = Response()
        set_state_cookie(response, issue_state_stub(), settings, secure=True)
    header = response.headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE_NAME}=")
    for part in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/api/oauth/", "Max-Age=600"):
        assert part in header


def issue_state_stub():
    from throttle_app.oauth.install_state import IssuedState

    return IssuedState("state-value", "signed-cookie-value")
