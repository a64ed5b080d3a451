"""The OAuth state: random, browser-bound (signed cookie), single-use (a Redis mark written when
it is used), valid 10 minutes, and nothing stored before the callback."""

from __future__ import annotations

import dataclasses
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
    used_key,
)


def refused(conn: redis.Redis, settings: Settings, state, cookie) -> str:
    with pytest.raises(StateError) as caught:
        consume_state(conn, settings, state, cookie)
    return caught.value.reason


def test_state_is_random_and_issuing_it_stores_nothing(redis_conn, settings):
    first, second = issue_state(settings), issue_state(settings)
    assert first.value != second.value and len(first.value) >= 43  # 32 random bytes
    assert redis_conn.dbsize() == 0
    assert first.value not in repr(first) and first.cookie not in repr(first)


def test_a_used_state_is_marked_hashed_until_its_cookie_expires(redis_conn, settings):
    issued = issue_state(settings)
    consume_state(redis_conn, settings, issued.value, issued.cookie)
    (key,) = [key.decode() for key in redis_conn.keys("*")]
    assert key == used_key(issued.value) and issued.value not in key
    # accepted while its age is at most 600 whole seconds: until 601 s after signing, + 1 s
    assert 600 <= redis_conn.ttl(key) <= 602


def test_state_is_accepted_once(redis_conn, settings):
    issued = issue_state(settings)
    consume_state(redis_conn, settings, issued.value, issued.cookie)
    assert refused(redis_conn, settings, issued.value, issued.cookie) == "reused"


@pytest.mark.parametrize("state", [None, ""])
def test_missing_state_is_refused(redis_conn, settings, state):
    issued = issue_state(settings)
    assert refused(redis_conn, settings, state, issued.cookie) == "missing"
    consume_state(redis_conn, settings, issued.value, issued.cookie)  # not burnt


def test_missing_cookie_another_browser_is_refused_without_burning_the_state(redis_conn, settings):
    issued = issue_state(settings)
    assert refused(redis_conn, settings, issued.value, None) == "missing"
    consume_state(redis_conn, settings, issued.value, issued.cookie)


def test_forged_states_and_cookies_are_refused(redis_conn, settings):
    issued, other = issue_state(settings), issue_state(settings)
    tampered = issued.cookie[:-2] + ("AA" if not issued.cookie.endswith("AA") else "BB")
    foreign = dataclasses.replace(settings, secret_key="another-secret-key-entirely")
    foreign_cookie = issue_state(foreign).cookie
    assert refused(redis_conn, settings, issued.value, tampered) == "forged"
    assert refused(redis_conn, settings, issued.value, other.cookie) == "forged"
    assert refused(redis_conn, settings, "guessed-state", issued.cookie) == "forged"
    assert refused(redis_conn, settings, issued.value, foreign_cookie) == "forged"
    assert refused(redis_conn, settings, "x" * 500, issued.cookie) == "forged"
    assert refused(redis_conn, settings, issued.value, "x" * 5000) == "forged"
    assert redis_conn.dbsize() == 0  # forgeries wrote nothing
    consume_state(redis_conn, settings, issued.value, issued.cookie)  # and burnt nothing


def test_an_old_cookie_is_expired(redis_conn, settings, monkeypatch):
    issued = issue_state(settings)
    later = int(time.time()) + settings.oauth_state_ttl_seconds + 1
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    assert refused(redis_conn, settings, issued.value, issued.cookie) == "expired"
    assert redis_conn.dbsize() == 0


def test_the_used_mark_expires_after_the_state_would_have(redis_conn, settings):
    short = dataclasses.replace(settings, oauth_state_ttl_seconds=1)
    issued = issue_state(short)
    consume_state(redis_conn, short, issued.value, issued.cookie)
    assert refused(redis_conn, short, issued.value, issued.cookie) == "reused"
    deadline = time.monotonic() + 5
    while redis_conn.exists(used_key(issued.value)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert redis_conn.exists(used_key(issued.value)) == 0
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
