"""Shared pieces of the OAuth tests: the fake HubSpot, wired apps, the browser flow, raw rows."""

from __future__ import annotations

import http.client
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from flask import Flask, current_app
from flask.testing import FlaskClient

from fake_hubspot import FakeHubSpot
from tests.conftest import connect_test_database
from throttle_app.hubspot.oauth_api import TokenGrant, TokenInfo
from throttle_app.oauth import rotation
from throttle_app.oauth.cipher import TokenCipher
from throttle_app.services import services_of

CLIENT_ID = "test-client-id"
PORTAL = 50467010


def start_install(client: FlaskClient) -> str:
    """GET /api/oauth/authorize; the consent-page URL it redirects to."""
    response = client.get("/api/oauth/authorize")
    assert response.status_code == 302, response.data
    return response.headers["Location"]


def consent(consent_url: str, portal_id: int = PORTAL, deny: bool = False) -> str:
    """Play the admin on HubSpot's consent page; the callback URL HubSpot redirects back to.

    Plain http.client, like a browser outside this process: nothing here writes to the logs
    that the no-secret-in-logs test reads.
    """
    parts = urlsplit(consent_url)
    extra = f"&portal_id={portal_id}" + ("&deny=1" if deny else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}{extra}")
        answer = conn.getresponse()
        assert answer.status == 302, answer.read()
        return answer.getheader("Location")
    finally:
        conn.close()


def local(url: str) -> str:
    """The path and query of a URL, for the Flask test client."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def query_param(url: str, name: str) -> str:
    return parse_qs(urlsplit(url).query)[name][0]


def install(client: FlaskClient, portal_id: int = PORTAL, **headers: str):
    """The whole browser flow: authorize, consent, callback. Returns the callback response."""
    callback_url = consent(start_install(client), portal_id)
    return client.get(local(callback_url), headers=headers)


def seed_portal(
    app: Flask, fake: FakeHubSpot, portal_id: int = PORTAL, expires_in: timedelta | None = None
) -> TokenGrant:
    """Install the app in a portal without the browser; optionally move its expiry."""
    answer = fake.issue_tokens(portal_id)
    grant = TokenGrant(
        access_token=answer["access_token"],
        refresh_token=answer["refresh_token"],
        expires_in=answer["expires_in"],
        issued_at=datetime.now(UTC),
        hub_id=portal_id,
    )
    info = TokenInfo(portal_id, f"portal-{portal_id}.example.com", "admin@example.com", (), 1, None)
    with app.app_context():
        services_of(app).tokens.store_install(grant, info)
    if expires_in is not None:
        set_expiry(portal_id, expires_in)
    return grant


def sql(statement: str, *params: object) -> list[tuple]:
    """Run one statement on its own connection and commit; the rows it returns, if any."""
    conn = connect_test_database()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def set_expiry(portal_id: int, remaining: timedelta) -> None:
    """Make the stored access token expire ``remaining`` from now (negative: already expired)."""
    sql(
        "UPDATE oauth_tokens SET expires_at = now() + %s WHERE portal_id = %s",
        remaining,
        portal_id,
    )


def raw_row(portal_id: int) -> dict[str, object]:
    """Every column of the portal's row, exactly as stored."""
    conn = connect_test_database()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT * FROM oauth_tokens WHERE portal_id = %s", (portal_id,))
            names = [column.name for column in cur.description]
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None, f"no oauth_tokens row for portal {portal_id}"
    return dict(zip(names, row, strict=True))


def hold_row_lock(portal_id: int):
    """A connection holding the portal row's lock (FOR UPDATE) until it is rolled back."""
    conn = connect_test_database()
    cur = conn.cursor()
    cur.execute("SELECT 1 FROM oauth_tokens WHERE portal_id = %s FOR UPDATE", (portal_id,))
    return conn


def refresh_calls(fake: FakeHubSpot) -> int:
    return fake.stats()["token_calls"].get("refresh_token", 0)


def stored_tokens(app, portal_id: int = PORTAL) -> tuple[str, str]:
    """The portal's (access, refresh) token as stored, decrypted with the app's keys."""
    row = raw_row(portal_id)
    cipher = TokenCipher(app.config["THROTTLE_SETTINGS"].token_keys)
    return (
        cipher.decrypt(row["access_token"], portal_id),
        cipher.decrypt(row["refresh_token"], portal_id),
    )


def access_token_for(portal_id: int) -> str:
    """The current app's token store, as the release engine asks it (inside an app context)."""
    return services_of(current_app).tokens.access_token_for(portal_id)


def refresh_after_unauthorized(portal_id: int, rejected: str) -> str:
    return services_of(current_app).tokens.refresh_after_unauthorized(portal_id, rejected)


def rotate_keys(**kwargs) -> rotation.RotationReport:
    """`flask tokens rotate`'s work under the current app's cipher."""
    return rotation.rotate_keys(services_of(current_app).tokens.cipher, **kwargs)
