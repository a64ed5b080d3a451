"""Access tokens for the release engine: refresh ahead of expiry, once, across processes."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.support.oauth_helpers import (
    PORTAL,
    access_token_for,
    hold_row_lock,
    raw_row,
    refresh_after_unauthorized,
    refresh_calls,
    seed_portal,
    set_expiry,
    sql,
    stored_tokens,
)
from throttle_app import create_app
from throttle_app.config import Settings
from throttle_app.extensions import db
from throttle_app.oauth.rotation import list_portals
from throttle_app.oauth.tokens import (
    PortalDisconnected,
    PortalNotInstalled,
    TokenUnavailable,
    mark_disconnected,
)

SOON = timedelta(seconds=60)  # inside the 5-minute refresh margin, still valid


def test_a_fresh_token_is_returned_without_calling_hubspot(app, fake):
    grant = seed_portal(app, fake)
    with app.app_context():
        assert access_token_for(PORTAL) == grant.access_token
    assert refresh_calls(fake) == 0


def test_a_token_inside_the_margin_is_refreshed_once_and_stored_encrypted(app, fake):
    grant = seed_portal(app, fake, expires_in=SOON)
    with app.app_context():
        token = access_token_for(PORTAL)
        assert access_token_for(PORTAL) == token
    assert token != grant.access_token
    assert refresh_calls(fake) == 1
    row = raw_row(PORTAL)
    assert token not in row["access_token"] and stored_tokens(app)[0] == token
    assert timedelta(minutes=29) < row["expires_at"] - row["refreshed_at"] <= timedelta(minutes=30)
    assert stored_tokens(app)[1] == grant.refresh_token  # no new refresh token: the old one is kept


def test_a_new_refresh_token_from_hubspot_is_stored(app, fake):
    fake.set_faults(rotate_refresh_tokens=True)
    grant = seed_portal(app, fake, expires_in=SOON)
    with app.app_context():
        first = access_token_for(PORTAL)
        new_refresh = stored_tokens(app)[1]
        assert new_refresh != grant.refresh_token
        second = refresh_after_unauthorized(PORTAL, first)  # refreshes with the new one
    assert second != first and refresh_calls(fake) == 2
    assert raw_row(PORTAL)["disconnected_at"] is None


def test_many_processes_refresh_exactly_once(app, fake):
    fake.set_faults(token_latency=1.0)  # the refresh takes a second: everyone piles up
    old = seed_portal(app, fake, expires_in=SOON).access_token
    ctx = multiprocessing.get_context("spawn")
    procs = 6
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [
        ctx.Process(target=_take_token, args=(fake.base_url, PORTAL, barrier, results))
        for _ in range(procs)
    ]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=90) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert [kind for kind, *_ in answers] == ["ok"] * procs, answers
    assert refresh_calls(fake) == 1
    tokens = {token for _, token, _ in answers}
    assert tokens == {stored_tokens(app)[0]} and old not in tokens
    # Every process overlapped the one slow refresh: they really raced, and waited for it.
    assert min(elapsed for *_, elapsed in answers) > 0.8


def _take_token(api_base: str, portal_id: int, barrier, results) -> None:
    """One process of the release engine: its own app, then access_token_for at the barrier."""
    from tests.conftest import service_env
    from tests.support.oauth_helpers import access_token_for

    env = service_env(HUBSPOT_API_BASE=api_base, HUBSPOT_APP_BASE=api_base)
    app = create_app(Settings.from_env(env))
    with app.app_context():
        with db.engine.connect() as conn:  # connect before the race, not during it
            conn.execute(text("SELECT 1"))
        barrier.wait(timeout=60)
        started = time.monotonic()
        try:
            token = access_token_for(portal_id)
            results.put(("ok", token, time.monotonic() - started))
        except Exception as exc:
            results.put(("error", repr(exc), time.monotonic() - started))
        db.engine.dispose()


def test_a_401_with_a_stale_token_does_not_refresh_again(app, fake):
    grant = seed_portal(app, fake)
    with app.app_context():
        current = refresh_after_unauthorized(PORTAL, grant.access_token)  # the stored one: refresh
        assert current != grant.access_token and refresh_calls(fake) == 1
        # A second worker got a 401 with the same old token: it gets the new one, no refresh.
        assert refresh_after_unauthorized(PORTAL, grant.access_token) == current
    assert refresh_calls(fake) == 1


def test_concurrent_401s_with_one_token_refresh_once(app, fake):
    fake.set_faults(token_latency=0.5)
    rejected = seed_portal(app, fake).access_token
    answers: list[str] = []

    def worker() -> None:
        with app.app_context():
            answers.append(refresh_after_unauthorized(PORTAL, rejected))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == 8 and len(set(answers)) == 1 and rejected not in answers
    assert refresh_calls(fake) == 1


def test_invalid_grant_disconnects_the_portal_and_stops_its_calls(app, fake):
    grant = seed_portal(app, fake, expires_in=SOON)
    fake.revoke_refresh_token(grant.refresh_token)  # the portal uninstalled the app
    with app.app_context():
        with pytest.raises(PortalDisconnected) as caught:
            access_token_for(PORTAL)
        assert "BAD_REFRESH_TOKEN" in str(caught.value)
        calls = fake.stats()["requests"]
        for _ in range(3):
            with pytest.raises(PortalDisconnected):
                access_token_for(PORTAL)
            with pytest.raises(PortalDisconnected):
                refresh_after_unauthorized(PORTAL, grant.access_token)
        assert fake.stats()["requests"] == calls  # nothing called HubSpot again
        (portal,) = list_portals()
    row = raw_row(PORTAL)
    assert row["disconnected_at"] is not None
    assert row["disconnect_reason"].startswith("BAD_REFRESH_TOKEN")
    assert not portal.connected and portal.disconnect_reason == row["disconnect_reason"]
    assert refresh_calls(fake) == 1


def test_a_portal_that_never_installed_is_not_connected(app):
    with app.app_context(), pytest.raises(PortalNotInstalled) as caught:
        access_token_for(999)
    assert isinstance(caught.value, PortalDisconnected)


def test_mark_disconnected_keeps_the_first_time_and_reason(app, fake):
    seed_portal(app, fake)
    with app.app_context():
        assert mark_disconnected(PORTAL, "first reason") is True
        assert mark_disconnected(PORTAL, "second reason") is False
        assert mark_disconnected(12345, "no such portal") is False
    assert raw_row(PORTAL)["disconnect_reason"] == "first reason"


def test_a_slow_hubspot_keeps_a_still_valid_token_and_retries_a_bounded_number(build, fake):
    app = build(http_read_timeout_seconds=0.3, token_call_retries=1)
    grant = seed_portal(app, fake, expires_in=SOON)
    fake.set_faults(token_latency=1.0)
    with app.app_context():
        assert access_token_for(PORTAL) == grant.access_token  # still valid for a minute
        assert refresh_calls(fake) == 2  # one try + one retry
        set_expiry(PORTAL, timedelta(seconds=-1))
        with pytest.raises(TokenUnavailable):
            access_token_for(PORTAL)
        with pytest.raises(TokenUnavailable):  # a 401 token is never handed back
            refresh_after_unauthorized(PORTAL, grant.access_token)
    assert raw_row(PORTAL)["disconnected_at"] is None  # slow is not disconnected


def test_refused_app_credentials_do_not_disconnect_the_portal(build, fake):
    app = build(hubspot_client_secret="not-the-secret-hubspot-knows")
    seed_portal(app, fake, expires_in=timedelta(seconds=-1))
    with app.app_context(), pytest.raises(TokenUnavailable):
        access_token_for(PORTAL)
    assert raw_row(PORTAL)["disconnected_at"] is None


def test_a_busy_refresh_lock_times_out_without_a_second_refresh(build, fake):
    app = build(token_lock_timeout_ms=300)
    grant = seed_portal(app, fake, expires_in=SOON)
    for remaining, usable in ((SOON, True), (timedelta(seconds=-1), False)):
        set_expiry(PORTAL, remaining)
        holder = hold_row_lock(PORTAL)  # another host is refreshing, slowly
        try:
            with app.app_context():
                started = time.monotonic()
                if usable:  # still valid for a minute: use it rather than wait
                    assert access_token_for(PORTAL) == grant.access_token
                else:
                    with pytest.raises(TokenUnavailable):
                        access_token_for(PORTAL)
                assert 0.25 < time.monotonic() - started < 3
        finally:
            holder.rollback()
            holder.close()
    assert refresh_calls(fake) == 0


def test_a_ciphertext_copied_to_another_portal_does_not_decrypt(app, fake):
    seed_portal(app, fake, portal_id=111)
    seed_portal(app, fake, portal_id=222)
    sql(
        "UPDATE oauth_tokens SET access_token = "
        "(SELECT access_token FROM oauth_tokens WHERE portal_id = 111) WHERE portal_id = 222"
    )
    with app.app_context():
        access_token_for(111)
        with pytest.raises(TokenUnavailable) as caught:
            access_token_for(222)
    assert "another portal" in str(caught.value)
