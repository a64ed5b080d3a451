"""HubSpot's OAuth endpoints (2026-03): code exchange, token refresh and token introspection.

Every call is a form POST through the shared session (`hubspot/http.py`) with connect and read
timeouts. Connection errors, timeouts, 429 and 5xx answers are retried `token_call_retries` times
with a short backoff, then raise `OAuthUnavailable`. A 4xx raises `OAuthRejected`, or
`InvalidGrant` when the code or refresh token itself is dead (`invalid_grant`,
`BAD_REFRESH_TOKEN`). Exception messages and logs never contain a token, code or the secret:
every form value we sent is scrubbed from any text HubSpot sends back.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from throttle_app.config import (
    TOKEN_BACKOFF_JITTER_SECONDS,
    TOKEN_BACKOFF_MAX_SECONDS,
    Settings,
)
from throttle_app.hubspot.http import hubspot_session, parse_retry_after, session_timeout
from throttle_app.input_fields import bigint
from throttle_app.telemetry.logs import REDACTED

__all__ = [
    "INTROSPECT_PATH",
    "TOKEN_PATH",
    "InvalidGrant",
    "OAuthAPIError",
    "OAuthBadAnswer",
    "OAuthRejected",
    "OAuthUnavailable",
    "TokenGrant",
    "TokenInfo",
    "exchange_code",
    "introspect",
    "refresh",
]

TOKEN_PATH = "/oauth/2026-03/token"  # noqa: S105  # nosec B105 # a path, not a secret
INTROSPECT_PATH = "/oauth/2026-03/token/introspect"
DEAD_GRANT_STATUSES = frozenset({"BAD_REFRESH_TOKEN", "BAD_AUTH_CODE"})
# HubSpot's access tokens live 30 minutes; a longer answer is trusted up to a day (the token is
# refreshed ahead of its expiry anyway, and a huge value would overflow the expiry time).
MAX_EXPIRES_IN_SECONDS = 86_400

log = logging.getLogger(__name__)


class OAuthAPIError(Exception):
    """A token call failed. The message never contains a token, a code or the client secret."""


class OAuthUnavailable(OAuthAPIError):
    """HubSpot could not be reached, timed out, or answered 429/5xx (after the retries)."""


class OAuthBadAnswer(OAuthAPIError):
    """HubSpot answered 2xx with a body we cannot use."""


class OAuthRejected(OAuthAPIError):
    """HubSpot refused the call with a 4xx (e.g. ``invalid_client``: our credentials)."""

    def __init__(
        self, http_status: int, error: str | None, status: str | None, message: str
    ) -> None:
        self.http_status = http_status
        self.error = error
        self.status = status
        self.message = message
        super().__init__(f"HubSpot refused the token call ({self.reason})")

    @property
    def reason(self) -> str:
        """Short, storable reason: ``BAD_REFRESH_TOKEN: missing or unknown refresh token``."""
        label = self.status or self.error or f"HTTP {self.http_status}"
        return f"{label}: {self.message}" if self.message else label


class InvalidGrant(OAuthRejected):
    """The authorization code or refresh token is dead (for a refresh: the app was uninstalled)."""


@dataclass(frozen=True)
class TokenGrant:
    """A token answer. ``refresh_token`` is None when a refresh answer carries none."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: int
    issued_at: datetime  # when we sent the request: the expiry is counted from here
    hub_id: int | None = None

    @property
    def expires_at(self) -> datetime:
        return self.issued_at + timedelta(seconds=self.expires_in)


@dataclass(frozen=True)
class TokenInfo:
    """The allow-listed facts of an introspected access token."""

    hub_id: int
    hub_domain: str | None
    user: str | None
    scopes: tuple[str, ...]
    app_id: int | None
    client_id: str | None


def exchange_code(settings: Settings, code: str, redirect_uri: str) -> TokenGrant:
    """Trade an authorization code for tokens (``grant_type=authorization_code``)."""
    form = _client_form(settings) | {
        "grant_type": "authorization_code",
        "redirect_uri": redirect_uri,
        "code": code,
    }
    grant = _grant(settings, form)
    if not grant.refresh_token:
        raise OAuthBadAnswer("HubSpot's code exchange answer has no refresh_token")
    return grant


def refresh(settings: Settings, refresh_token: str) -> TokenGrant:
    """A new access token (and maybe a new refresh token) for a refresh token."""
    form = _client_form(settings) | {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return _grant(settings, form)


def introspect(settings: Settings, access_token: str) -> TokenInfo:
    """What an access token is: its portal (``hub_id``), domain, user, scopes and app."""
    form = _client_form(settings) | {"token": access_token, "token_type_hint": "access_token"}  # nosec B105 # a field name
    body = _post_form(settings, INTROSPECT_PATH, form)
    if body.get("active") is not True:
        raise OAuthBadAnswer("HubSpot says the new access token is not active")
    hub_id = bigint(body.get("hub_id"))
    if hub_id is None or hub_id <= 0:
        raise OAuthBadAnswer("HubSpot's introspection answer has no valid hub_id")
    scopes = body.get("scopes")
    return TokenInfo(
        hub_id=hub_id,
        hub_domain=_text(body.get("hub_domain")),
        user=_text(body.get("user")),
        scopes=tuple(str(s) for s in scopes) if isinstance(scopes, list) else (),
        app_id=bigint(body.get("app_id")),
        client_id=_text(body.get("client_id")),
    )


def _client_form(settings: Settings) -> dict[str, str]:
    return {
        "client_id": settings.hubspot_client_id,
        "client_secret": settings.hubspot_client_secret,
    }


def _grant(settings: Settings, form: dict[str, str]) -> TokenGrant:
    issued_at = datetime.now(UTC)
    body = _post_form(settings, TOKEN_PATH, form)
    access_token, refresh_token = body.get("access_token"), body.get("refresh_token")
    expires_in = bigint(body.get("expires_in"))
    if not isinstance(access_token, str) or not access_token:
        raise OAuthBadAnswer("HubSpot's token answer has no access_token")
    if expires_in is None or expires_in <= 0:
        raise OAuthBadAnswer("HubSpot's token answer has no valid expires_in")
    expires_in = min(expires_in, MAX_EXPIRES_IN_SECONDS)
    return TokenGrant(
        access_token=access_token,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        expires_in=expires_in,
        issued_at=issued_at,
        hub_id=bigint(body.get("hub_id")),
    )


def _post_form(settings: Settings, path: str, form: dict[str, str]) -> dict[str, Any]:
    """POST ``form``; the JSON answer of a 2xx. Retries transient failures a bounded number."""
    attempts = settings.token_call_retries + 1
    for attempt in range(1, attempts + 1):
        retry_after: float | None = None
        try:
            response = hubspot_session().post(
                settings.hubspot_api_base + path,
                data=form,
                headers={"Accept": "application/json"},
                timeout=session_timeout(settings),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            failure = OAuthUnavailable(f"HubSpot {path} call failed: {type(exc).__name__}")
        else:
            if response.status_code != 429 and response.status_code < 500:
                return _answer(response, form)
            failure = OAuthUnavailable(f"HubSpot {path} answered {response.status_code}")
            retry_after = _retry_after(response)
        if attempt < attempts:
            log.warning("%s; retrying (attempt %d of %d)", failure, attempt + 1, attempts)
            time.sleep(_backoff(attempt, retry_after))
    raise failure


def _answer(response: requests.Response, form: dict[str, str]) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if 200 <= response.status_code < 300:
        if not isinstance(body, dict):
            raise OAuthBadAnswer(f"HubSpot answered {response.status_code} without a JSON object")
        return body
    if response.status_code >= 300 and not 400 <= response.status_code < 500:
        raise OAuthBadAnswer(f"HubSpot answered an unexpected {response.status_code}")
    body = body if isinstance(body, dict) else {}
    error, status = _text(body.get("error")), _text(body.get("status"))
    raw = body.get("message") or body.get("error_description")
    message = _scrub(raw, form)[:255] if isinstance(raw, str) else ""
    kind = InvalidGrant if error == "invalid_grant" or status in DEAD_GRANT_STATUSES else None
    raise (kind or OAuthRejected)(response.status_code, error, status, message)


def _scrub(text: str, form: dict[str, str]) -> str:
    """Remove every value we sent (tokens, code, secret) from text HubSpot sent back."""
    for name, value in form.items():
        if name not in ("grant_type", "token_type_hint", "redirect_uri") and len(value) >= 6:
            text = text.replace(value, REDACTED)
    return text


def _retry_after(response: requests.Response) -> float | None:
    value = parse_retry_after(response.headers.get("Retry-After"))
    return None if value is None else max(0.0, value)


def _backoff(attempt: int, retry_after: float | None) -> float:
    base = retry_after if retry_after is not None else 0.2 * 2 ** (attempt - 1)
    return min(TOKEN_BACKOFF_MAX_SECONDS, base) + random.uniform(0, TOKEN_BACKOFF_JITTER_SECONDS)  # nosec B311 # jitter


def _text(value: Any) -> str | None:
    return value[:255] if isinstance(value, str) and value else None
