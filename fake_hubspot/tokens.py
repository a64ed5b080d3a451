"""OAuth grants: authorization codes, access tokens and refresh tokens, bound to portals.

Not thread-safe on its own: the hub's lock guards every call. Times are wall-clock
(``time.time()``), since access tokens expire on the real clock.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any


class OAuthError(Exception):
    """A token-endpoint failure, answered like HubSpot: ``{"status","message","error",...}``."""

    def __init__(self, http_status: int, status: str, error: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status = status
        self.error = error
        self.message = message


def bad_client(field_name: str) -> OAuthError:
    """Wrong or missing client_id / client_secret."""
    status = "BAD_CLIENT_ID" if field_name == "client_id" else "BAD_CLIENT_SECRET"
    return OAuthError(400, status, "invalid_client", f"missing or invalid {field_name}")


@dataclass
class AuthCode:
    portal_id: int
    scopes: tuple[str, ...]
    redirect_uri: str
    expires_at: float
    used: bool = False


@dataclass
class RefreshToken:
    portal_id: int
    scopes: tuple[str, ...]
    revoked: bool = False


@dataclass
class AccessToken:
    portal_id: int
    scopes: tuple[str, ...]
    expires_at: float
    refresh_token: str
    revoked: bool = False


@dataclass(frozen=True)
class Lookup:
    """What a bearer token turned out to be."""

    token: AccessToken | None
    problem: str | None  # None, "unknown", "revoked" or "expired"
    expired_for: int = 0  # whole seconds since expiry


class TokenStore:
    """Issues, checks, refreshes and revokes OAuth credentials."""

    def __init__(self) -> None:
        self.codes: dict[str, AuthCode] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.access_tokens: dict[str, AccessToken] = {}

    def clear(self) -> None:
        """Forget every code and token (every portal uninstalled)."""
        self.codes.clear()
        self.refresh_tokens.clear()
        self.access_tokens.clear()

    def new_code(
        self, portal_id: int, scopes: tuple[str, ...], redirect_uri: str, ttl: float
    ) -> str:
        """A fresh single-use authorization code."""
        code = str(uuid.uuid4())
        self.codes[code] = AuthCode(portal_id, scopes, redirect_uri, time.time() + ttl)
        return code

    def redeem_code(self, code: str, redirect_uri: str, expires_in: int) -> dict[str, Any]:
        """Exchange a code for tokens; a code works once, before it expires, for its redirect."""
        grant = self.codes.get(code)
        if grant is None or grant.used or grant.expires_at <= time.time():
            raise OAuthError(400, "BAD_AUTH_CODE", "invalid_grant", "missing or unknown auth code")
        if redirect_uri != grant.redirect_uri:
            raise OAuthError(
                400,
                "BAD_REDIRECT_URI",
                "invalid_grant",
                "redirect_uri does not match the redirect_uri used to generate the code",
            )
        grant.used = True
        return self.issue(grant.portal_id, grant.scopes, expires_in)

    def issue(
        self,
        portal_id: int,
        scopes: tuple[str, ...],
        expires_in: int,
        refresh_token: str | None = None,
    ) -> dict[str, Any]:
        """A new access token (and a new refresh token unless one is given): the token answer."""
        if refresh_token is None:
            refresh_token = f"na1-{uuid.uuid4()}"
            self.refresh_tokens[refresh_token] = RefreshToken(portal_id, scopes)
        access_token = "C" + secrets.token_urlsafe(96)
        self.access_tokens[access_token] = AccessToken(
            portal_id, scopes, time.time() + expires_in, refresh_token
        )
        return {
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_in": expires_in,
            "token_type": "bearer",
            "hub_id": portal_id,
            "scopes": list(scopes),
        }

    def refresh(self, refresh_token: str, expires_in: int, rotate: bool) -> dict[str, Any]:
        """A new access token for a live refresh token; with ``rotate`` a new refresh token too."""
        grant = self.refresh_tokens.get(refresh_token)
        if grant is None or grant.revoked:
            raise OAuthError(
                400, "BAD_REFRESH_TOKEN", "invalid_grant", "missing or unknown refresh token"
            )
        if not rotate:
            return self.issue(grant.portal_id, grant.scopes, expires_in, refresh_token)
        grant.revoked = True  # the old one dies; access tokens already issued live on
        return self.issue(grant.portal_id, grant.scopes, expires_in)

    def lookup(self, token: str) -> Lookup:
        """Judge a bearer token."""
        found = self.access_tokens.get(token)
        if found is None:
            return Lookup(None, "unknown")
        if found.revoked:
            return Lookup(None, "revoked")
        late = time.time() - found.expires_at
        if late >= 0:
            return Lookup(None, "expired", int(late))
        return Lookup(found, None)

    def introspect(self, token: str) -> dict[str, Any] | None:
        """Facts about a live token (access or refresh), or None when it is not active."""
        access = self.lookup(token).token
        if access is not None:
            expires_in = max(0, int(access.expires_at - time.time()))
            return _facts(access.portal_id, access.scopes, "access_token", expires_in)
        grant = self.refresh_tokens.get(token)
        if grant is not None and not grant.revoked:
            return _facts(grant.portal_id, grant.scopes, "refresh_token", None)
        return None

    def revoke_refresh(self, refresh_token: str) -> bool:
        """Kill a refresh token and every access token issued from it (the app is uninstalled)."""
        grant = self.refresh_tokens.get(refresh_token)
        if grant is None:
            return False
        grant.revoked = True
        for access in self.access_tokens.values():
            if access.refresh_token == refresh_token:
                access.revoked = True
        return True

    def expire_access(self, access_token: str) -> bool:
        """Make an access token expire now."""
        found = self.access_tokens.get(access_token)
        if found is None:
            return False
        found.expires_at = min(found.expires_at, time.time())
        return True


def _facts(
    portal_id: int, scopes: tuple[str, ...], kind: str, expires_in: int | None
) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "active": True,
        "hub_id": portal_id,
        "hub_domain": f"portal-{portal_id}.example.com",
        "user": "admin@example.com",
        "user_id": 1000001,
        "scopes": list(scopes),
        "token_type": kind,
    }
    if expires_in is not None:
        facts["expires_in"] = expires_in
    return facts
