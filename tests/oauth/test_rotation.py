"""oauth/rotation.py: key rotation (`flask tokens rotate` moves every row to the first key, so old
keys can go)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from datetime import timedelta

import pytest

from tests.conftest import TEST_KEY, service_env
from tests.support.oauth_helpers import (
    PORTAL,
    access_token_for,
    hold_row_lock,
    raw_row,
    rotate_keys,
    seed_portal,
    sql,
)
from tests.support.processes import ROOT
from throttle_app.encryption_keys import key_id
from throttle_app.oauth.cipher import TokenCipher
from throttle_app.oauth.tokens import (
    TokenUnavailable,
    mark_disconnected,
)

OLD = base64.b64decode(TEST_KEY)
NEW = b"n" * 32
PORTALS = (101, 102, 103, 104, 105)


def key_ids(portal_id: int) -> tuple[str, str]:
    row = raw_row(portal_id)
    return row["access_token"].split(".")[1], row["refresh_token"].split(".")[1]


def seed(app, fake, portals=PORTALS) -> dict[int, str]:
    return {portal: seed_portal(app, fake, portal).access_token for portal in portals}


def test_rotation_re_encrypts_every_row_and_the_old_key_can_be_dropped(build, fake):
    tokens = seed(build(), fake)  # written under the old key only
    with build(token_keys=(NEW,)).app_context(), pytest.raises(TokenUnavailable):
        access_token_for(PORTALS[0])  # dropping the old key too early loses the tokens
    with build(token_keys=(NEW, OLD)).app_context():
        mark_disconnected(PORTALS[-1], "disconnected rows are rotated too")
        report = rotate_keys(batch_size=2)
        assert (report.rotated, report.failed, report.remaining) == (5, (), 0)
        assert report.key_id == key_id(NEW)
        assert rotate_keys(batch_size=2).rotated == 0  # idempotent
    for portal in PORTALS:
        assert key_ids(portal) == (key_id(NEW), key_id(NEW))
    with build(token_keys=(NEW,)).app_context():  # the old key is gone
        for portal in PORTALS[:-1]:
            assert access_token_for(portal) == tokens[portal]
    cipher = TokenCipher((NEW,))
    assert cipher.decrypt(raw_row(PORTALS[-1])["refresh_token"], PORTALS[-1])


def test_a_row_locked_by_a_refresh_is_skipped_then_rotated(build, fake):
    seed(build(), fake)
    app = build(token_keys=(NEW, OLD))
    holder = hold_row_lock(PORTALS[2])
    try:
        with app.app_context():
            report = rotate_keys(batch_size=2, passes=2, pause_seconds=0.05)
        assert (report.rotated, report.remaining) == (4, 1)
    finally:
        holder.rollback()
        holder.close()
    with app.app_context():
        assert rotate_keys().remaining == 0
    assert {key_ids(portal) for portal in PORTALS} == {(key_id(NEW), key_id(NEW))}


def test_rotation_while_refreshes_run(build, fake):
    """Refreshes (holding row locks for 0.2 s each) and a rotation at the same time."""
    seed(build(), fake, PORTALS)
    sql("UPDATE oauth_tokens SET expires_at = now() + %s", timedelta(seconds=60))  # all stale
    fake.set_faults(token_latency=0.2)
    app = build(token_keys=(NEW, OLD))
    refreshed: dict[int, str] = {}

    def refresh(portal: int) -> None:
        with app.app_context():
            refreshed[portal] = access_token_for(portal)

    threads = [threading.Thread(target=refresh, args=(portal,)) for portal in PORTALS]
    for thread in threads:
        thread.start()
    with app.app_context():
        report = rotate_keys(batch_size=1, passes=20, pause_seconds=0.1)
    for thread in threads:
        thread.join(timeout=30)
    assert report.remaining == 0 and len(refreshed) == len(PORTALS)
    with build(token_keys=(NEW,)).app_context():
        for portal in PORTALS:
            assert key_ids(portal) == (key_id(NEW), key_id(NEW))
            assert access_token_for(portal) == refreshed[portal]


def test_a_row_no_key_decrypts_is_reported_not_looped_on(build, fake):
    seed(build(token_keys=(b"u" * 32,)), fake, (PORTAL,))  # written under an unknown key
    seed(build(), fake, PORTALS[:2])
    with build(token_keys=(NEW, OLD)).app_context():
        report = rotate_keys(batch_size=1, passes=2, pause_seconds=0.01)
    assert (report.rotated, report.failed, report.remaining) == (2, (PORTAL,), 1)


def test_cli_rotate_and_portals(build, fake):
    seed(build(), fake, PORTALS[:3])
    app = build(token_keys=(NEW, OLD))
    with app.app_context():
        mark_disconnected(PORTALS[1], "BAD_REFRESH_TOKEN: missing or unknown refresh token")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["tokens", "rotate", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert f"re-encrypted 3 portal(s) under key {key_id(NEW)}" in result.output
    lines = runner.invoke(args=["throttle", "portals"]).output.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{PORTALS[0]}  portal-{PORTALS[0]}.example.com  connected")
    assert f"key {key_id(NEW)}" in lines[0]
    assert "DISCONNECTED since" in lines[1] and "BAD_REFRESH_TOKEN" in lines[1]
    as_json = runner.invoke(args=["throttle", "portals", "--json"]).output
    assert '"connected": false' in as_json and "v1." not in as_json


def test_cli_rotate_fails_while_rows_remain(build, fake):
    seed(build(), fake, (PORTAL,))
    app = build(token_keys=(NEW, OLD))
    holder = hold_row_lock(PORTAL)
    try:
        result = app.test_cli_runner().invoke(args=["tokens", "rotate"])
    finally:
        holder.rollback()
        holder.close()
    assert result.exit_code == 1
    assert "still under another key" in result.output


def test_a_malformed_key_in_the_list_stops_start_up():
    env = {**os.environ, **service_env(TOKEN_ENCRYPTION_KEY=f"{TEST_KEY},not-a-key")}
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    result = subprocess.run(
        [flask, "--app", "throttle_app", "tokens", "rotate"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "throttle: configuration error: TOKEN_ENCRYPTION_KEY entry 2 is not base64 of 32 bytes"
    ]
    assert TEST_KEY not in result.stderr
