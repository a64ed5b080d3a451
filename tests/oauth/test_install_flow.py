"""The install flow end to end: our views, a browser (the test client) and the fake HubSpot."""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy.exc import OperationalError

from tests.conftest import CONFIG_AUTH
from tests.support.oauth_helpers import (
    CLIENT_ID,
    PORTAL,
    consent,
    install,
    local,
    query_param,
    raw_row,
    refresh_calls,
    set_expiry,
    start_install,
    stored_tokens,
)
from tests.support.processes import free_port
from throttle_app.oauth.tokens import PortalDisconnected, mark_disconnected
from throttle_app.services import services_of
from throttle_app.telemetry.logs import configure_logging, redacting_filter


def exchanges(fake) -> int:
    return fake.stats()["token_calls"].get("authorization_code", 0)


def test_authorize_redirects_to_hubspot_with_a_browser_bound_state(client, fake):
    response = client.get("/api/oauth/authorize")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(f"{fake.base_url}/oauth/authorize?")
    assert query_param(location, "client_id") == CLIENT_ID
    assert query_param(location, "redirect_uri") == "http://localhost/api/oauth/callback"
    assert query_param(location, "scope") == "automation oauth"
    assert len(query_param(location, "state")) >= 43
    assert response.headers["Cache-Control"] == "no-store"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/api/oauth/" in cookie
    assert query_param(location, "state") not in cookie


def test_2000_anonymous_authorize_requests_store_nothing(client, redis_conn):
    """The issue's flood: every anonymous authorize used to store a state in Redis."""
    states = {query_param(client.get("/api/oauth/authorize").headers["Location"], "state")}
    for _ in range(1999):
        response = client.get("/api/oauth/authorize")
        assert response.status_code == 302
        states.add(query_param(response.headers["Location"], "state"))
    assert len(states) == 2000
    assert redis_conn.dbsize() == 0


def test_an_install_leaves_one_used_mark_in_redis(client, redis_conn):
    assert install(client).status_code == 200
    # Beside it, only the account-details call's traces: its metric and its bucket token.
    call_traces = (b"throttle:metrics:", b"throttle:bucket:")
    (key,) = [k for k in redis_conn.keys("*") if not k.startswith(call_traces)]
    assert key.startswith(b"throttle:oauth:used-state:") and redis_conn.ttl(key) <= 602


def test_public_base_url_sets_the_redirect_uri_and_a_secure_cookie(build):
    client = build(public_base_url="https://throttle.example.com").test_client()
    response = client.get("/api/oauth/authorize")
    redirect_uri = query_param(response.headers["Location"], "redirect_uri")
    assert redirect_uri == "https://throttle.example.com/api/oauth/callback"
    assert "Secure" in response.headers["Set-Cookie"]


def test_install_stores_an_encrypted_row_with_allow_listed_metadata(app, client, fake):
    response = install(client)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Throttle is installed" in page and str(PORTAL) in page
    assert "portal-50467010.example.com" in page
    assert response.headers["Cache-Control"] == "no-store"
    assert "throttle_oauth_state=;" in response.headers["Set-Cookie"]  # the state cookie is gone
    row = raw_row(PORTAL)
    access, refresh = stored_tokens(app)
    raw = " ".join(str(value) for value in row.values())
    assert access not in raw and refresh not in raw
    assert row["access_token"].startswith("v1.") and row["refresh_token"].startswith("v1.")
    assert row["hub_domain"] == "portal-50467010.example.com"
    assert row["installed_by"] == "admin@example.com"
    assert row["scopes"] == "automation oauth"
    assert row["app_id"] == 4242424
    assert row["disconnected_at"] is None
    assert timedelta(minutes=29) < row["expires_at"] - row["created_at"] <= timedelta(minutes=30)
    facts = requests.post(
        f"{fake.base_url}/oauth/2026-03/token/introspect",
        data={"token": access, "client_id": CLIENT_ID, "client_secret": fake.client_secret},
        timeout=5,
    ).json()
    assert facts["active"] is True and facts["hub_id"] == PORTAL
    with app.app_context():
        assert services_of(app).tokens.access_token_for(PORTAL) == access


def test_install_answers_json_when_asked(client):
    response = install(client, Accept="application/json")
    assert response.status_code == 200
    assert response.json == {
        "status": "connected",
        "portal_id": PORTAL,
        "hub_domain": "portal-50467010.example.com",
        "reconnected": False,
        "time_zone": "America/New_York",
    }


def test_a_reused_state_is_refused(client, fake):
    callback_url = consent(start_install(client))
    assert client.get(local(callback_url)).status_code == 200
    replay = client.get(local(callback_url), headers={"Accept": "application/json"})
    assert replay.status_code == 400
    assert replay.json["reason"] == "state_missing"  # the answer cleared the cookie
    assert exchanges(fake) == 1


def test_a_replayed_callback_with_the_original_cookie_is_refused(client, fake):
    callback_url = consent(start_install(client))
    cookie = client.get_cookie("throttle_oauth_state", path="/api/oauth/").value
    assert client.get(local(callback_url)).status_code == 200
    client.set_cookie("throttle_oauth_state", cookie, path="/api/oauth/")
    replay = client.get(local(callback_url), headers={"Accept": "application/json"})
    assert (replay.status_code, replay.json["reason"]) == (400, "state_reused")
    assert exchanges(fake) == 1


def test_a_missing_state_is_refused(client, fake):
    callback_url = consent(start_install(client))
    code = query_param(callback_url, "code")
    response = client.get(f"/api/oauth/callback?code={code}")
    assert response.status_code == 400
    assert "start the install again" in response.get_data(as_text=True).lower()
    assert code not in response.get_data(as_text=True)
    assert exchanges(fake) == 0


def test_a_state_from_another_browser_is_refused(app, client, fake):
    callback_url = consent(start_install(client))
    other_browser = app.test_client()
    response = other_browser.get(local(callback_url), headers={"Accept": "application/json"})
    assert (response.status_code, response.json["reason"]) == (400, "state_missing")
    assert exchanges(fake) == 0
    assert client.get(local(callback_url)).status_code == 200  # the real browser still can


def test_a_forged_state_or_cookie_is_refused(client, fake):
    callback_url = consent(start_install(client))
    forged_url = local(callback_url).replace("state=", "state=forged")
    response = client.get(forged_url, headers={"Accept": "application/json"})
    assert (response.status_code, response.json["reason"]) == (400, "state_forged")
    callback_url = consent(start_install(client))
    client.set_cookie("throttle_oauth_state", "forged.cookie.value", path="/api/oauth/")
    response = client.get(local(callback_url), headers={"Accept": "application/json"})
    assert (response.status_code, response.json["reason"]) == (400, "state_forged")
    assert exchanges(fake) == 0


def test_an_expired_state_is_refused(build, fake):
    import time

    client = build(oauth_state_ttl_seconds=1).test_client()
    callback_url = consent(start_install(client))
    time.sleep(2.1)
    response = client.get(local(callback_url), headers={"Accept": "application/json"})
    assert (response.status_code, response.json["reason"]) == (400, "state_expired")
    assert exchanges(fake) == 0


def test_a_declined_consent_is_a_readable_page(client, fake):
    callback_url = consent(start_install(client), deny=True)
    response = client.get(local(callback_url))
    assert response.status_code == 400
    assert "Install cancelled" in response.get_data(as_text=True)
    assert response.content_type.startswith("text/html")
    assert exchanges(fake) == 0


def test_a_code_hubspot_refuses_is_a_400_without_echoing_it(client, fake):
    callback_url = consent(start_install(client))
    state = query_param(callback_url, "state")
    response = client.get(f"/api/oauth/callback?code=bogus-code-123456&state={state}")
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "did not accept the authorization" in body
    assert "bogus-code-123456" not in body and state not in body
    assert exchanges(fake) == 1


def test_a_slow_hubspot_is_a_503_after_bounded_retries(build, fake):
    client = build(http_read_timeout_seconds=0.3, token_call_retries=1).test_client()
    fake.set_faults(token_latency=1.0)
    response = install(client, Accept="application/json")
    assert (response.status_code, response.json["reason"]) == (503, "hubspot_unavailable")
    assert response.headers["Retry-After"]
    assert exchanges(fake) == 2


def test_an_unreachable_hubspot_is_a_503(build):
    client = build(hubspot_api_base=f"http://127.0.0.1:{free_port()}").test_client()
    response = install(client)
    assert response.status_code == 503
    assert "could not be reached" in response.get_data(as_text=True)


def test_wrong_app_credentials_are_a_502(build):
    client = build(hubspot_client_secret="not-the-secret-hubspot-knows").test_client()
    response = install(client, Accept="application/json")
    assert (response.status_code, response.json["reason"]) == (502, "hubspot_refused")


def test_redis_down_is_a_503_page(build):
    client = build(redis_url=f"redis://127.0.0.1:{free_port()}/0").test_client()
    response = client.get("/api/oauth/authorize")
    assert response.status_code == 503
    assert "temporarily unavailable" in response.get_data(as_text=True)
    assert response.headers["Retry-After"]


def test_a_database_failure_while_storing_is_a_503(app, client, fake, monkeypatch):
    def broken(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(services_of(app).tokens, "store_install", broken)
    response = install(client, Accept="application/json")
    assert (response.status_code, response.json["reason"]) == (503, "unavailable")


def test_a_new_install_reconnects_a_disconnected_portal(app, client, fake):
    assert install(client).status_code == 200
    with app.app_context():
        assert mark_disconnected(PORTAL, "BAD_REFRESH_TOKEN: test") is True
        with pytest.raises(PortalDisconnected):
            services_of(app).tokens.access_token_for(PORTAL)
    response = install(client)
    assert response.status_code == 200
    assert "reconnected" in response.get_data(as_text=True)
    row = raw_row(PORTAL)
    assert row["disconnected_at"] is None and row["disconnect_reason"] is None
    with app.app_context():
        assert services_of(app).tokens.access_token_for(PORTAL) == stored_tokens(app)[0]


def test_portals_api_shows_connection_state_without_secrets(app, client):
    install(client)
    assert client.get("/api/oauth/portals").status_code == 401
    response = client.get("/api/oauth/portals", headers=CONFIG_AUTH)
    assert response.status_code == 200
    (portal,) = response.json["portals"]
    assert portal["portal_id"] == PORTAL and portal["connected"] is True
    access, refresh = stored_tokens(app)
    body = response.get_data(as_text=True)
    assert (
        access not in body and refresh not in body and raw_row(PORTAL)["access_token"] not in body
    )


def test_logs_of_a_full_flow_contain_no_secret(app, client, fake):
    """Install, refresh, forced refresh, refused codes and a disconnect; then read every log."""
    settings = app.config["THROTTLE_SETTINGS"]
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    unredacted, redacted = io.StringIO(), io.StringIO()
    raw_handler = logging.StreamHandler(unredacted)  # runs before the redacting handler
    root.addHandler(raw_handler)
    configure_logging("DEBUG", secrets=settings.secrets, json_lines=True, stream=redacted)
    seen: set[str] = {settings.hubspot_client_secret, settings.secret_key}
    try:
        callback_url = consent(start_install(client))
        seen |= {query_param(callback_url, "code"), query_param(callback_url, "state")}
        assert client.get(local(callback_url)).status_code == 200
        assert client.get(local(callback_url)).status_code == 400  # replay
        seen |= set(stored_tokens(app))
        with app.app_context():
            set_expiry(PORTAL, timedelta(seconds=30))
            refreshed = services_of(app).tokens.access_token_for(PORTAL)
            forced = services_of(app).tokens.refresh_after_unauthorized(PORTAL, refreshed)
            seen |= {refreshed, forced, *stored_tokens(app)}
            fake.revoke_refresh_token(stored_tokens(app)[1])
            with pytest.raises(PortalDisconnected):
                services_of(app).tokens.refresh_after_unauthorized(PORTAL, forced)
        callback_url = consent(start_install(client))
        seen.add(query_param(callback_url, "code"))
        bad = local(callback_url).replace("code=", "code=x")
        assert client.get(bad).status_code == 400  # HubSpot refuses the code
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
        redacting_filter().set_secrets(())
    assert refresh_calls(fake) == 3
    logs = redacted.getvalue()
    assert "portal installed" in logs and "refreshed access token" in logs
    assert "portal disconnected" in logs
    for secret in seen:
        assert secret not in logs
        assert secret not in unredacted.getvalue()  # our code never logs one, even unfiltered
    assert urlsplit(fake.base_url).netloc in unredacted.getvalue()  # HTTP was logged at DEBUG
