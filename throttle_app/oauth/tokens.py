"""Each portal's OAuth tokens: install, a valid access token on demand, disconnects.

Tokens are stored encrypted (oauth/cipher.py: AES-256-GCM, the portal id as associated data, the
key id in the value). Every function here runs in its own short transaction on its own connection
(`own_transaction`), never in the caller's `db.session`, and commits its own work. Listing
portals and re-encrypting under a new key are in rotation.py. `TokenStore` is built once per
process by the composition root with its settings, cipher and metrics sink.

Refresh protocol (one refresh per portal at a time, across processes and hosts): read the row; if
the token has more than `token_refresh_margin_seconds` left, use it. Otherwise lock the row
(`SELECT ... FOR UPDATE` under `SET LOCAL lock_timeout`), re-read, and refresh only if it is still
stale, so waiters reuse the token the lock holder stored. After a 401, a forced refresh happens
only while the stored token is still the rejected one. ``invalid_grant`` marks the portal
disconnected; nothing calls HubSpot for it again until a new install.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from throttle_app.config import Settings
from throttle_app.extensions import own_transaction
from throttle_app.hubspot import oauth_api
from throttle_app.models import OAuthToken
from throttle_app.oauth.cipher import DecryptionError, TokenCipher

LOCK_NOT_AVAILABLE = "55P03"
MIN_USABLE = timedelta(seconds=30)  # a stale token this far from expiry still serves a call

log = logging.getLogger(__name__)


class TokenError(Exception):
    """No access token can be given for the portal right now."""


class PortalDisconnected(TokenError):
    """The portal's refresh token is dead (or it never installed): do not call HubSpot for it."""

    def __init__(self, portal_id: int, reason: str | None) -> None:
        super().__init__(f"portal {portal_id} is disconnected: {reason or 'unknown reason'}")
        self.portal_id = portal_id
        self.reason = reason


class PortalNotInstalled(PortalDisconnected):
    """No install of the app is stored for the portal."""

    def __init__(self, portal_id: int) -> None:
        super().__init__(portal_id, "the app is not installed in this portal")


class TokenUnavailable(TokenError):
    """Transient: HubSpot unreachable, refresh lock busy, or a row no key decrypts. Retry later."""


@dataclass(frozen=True)
class InstalledPortal:
    portal_id: int
    hub_domain: str | None
    reconnected: bool  # the portal was disconnected before this install


def _now() -> datetime:
    return datetime.now(UTC)


def _lock_row(session: Session, portal_id: int, timeout_ms: int) -> OAuthToken | None:
    session.execute(select(func.set_config("lock_timeout", f"{timeout_ms}ms", True)))
    query = select(OAuthToken).where(OAuthToken.portal_id == portal_id).with_for_update()
    return session.scalars(query).one_or_none()


def _read_row(portal_id: int) -> OAuthToken:
    with own_transaction() as session:
        row = session.scalars(select(OAuthToken).where(OAuthToken.portal_id == portal_id)).first()
    return _connected(row, portal_id)


def _connected(row: OAuthToken | None, portal_id: int) -> OAuthToken:
    if row is None:
        raise PortalNotInstalled(portal_id)
    if row.disconnected_at is not None:
        raise PortalDisconnected(portal_id, row.disconnect_reason)
    return row


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _fresh(row: OAuthToken, settings: Settings) -> bool:
    return row.expires_at - _now() > timedelta(seconds=settings.token_refresh_margin_seconds)


def _keep(row: OAuthToken, current: str, rejected: str | None, settings: Settings) -> bool:
    """The stored token needs no refresh: fresh, and not the one HubSpot just refused."""
    return _fresh(row, settings) and not (rejected is not None and _same(current, rejected))


def _disconnect(row: OAuthToken, reason: str) -> None:
    row.disconnected_at = row.updated_at = _now()
    row.disconnect_reason = reason
    log.warning(
        "portal disconnected: HubSpot refused its refresh token",
        extra={"portal_id": row.portal_id, "reason": reason},
    )


def mark_disconnected(portal_id: int, reason: str) -> bool:
    """Mark the portal disconnected (keeps the first time and reason). True if it was connected."""
    with own_transaction() as session:
        result = session.execute(
            update(OAuthToken)
            .where(OAuthToken.portal_id == portal_id, OAuthToken.disconnected_at.is_(None))
            .values(disconnected_at=func.now(), disconnect_reason=reason, updated_at=func.now())
        )
    if result.rowcount:
        log.warning("portal disconnected", extra={"portal_id": portal_id, "reason": reason})
    return bool(result.rowcount)


class RefreshMetrics(Protocol):
    """Where refresh outcomes are counted (telemetry.worker_metrics.RedisMetrics)."""

    def incr(
        self, name: str, labels: dict[str, object] | None = None, amount: float = 1
    ) -> None: ...


class TokenStore:
    """The portals' tokens for one process: settings, the cipher and a metrics sink, given."""

    def __init__(self, settings: Settings, cipher: TokenCipher, metrics: RefreshMetrics) -> None:
        self._settings = settings
        self._cipher = cipher
        self._metrics = metrics

    @property
    def cipher(self) -> TokenCipher:
        """The cipher over TOKEN_ENCRYPTION_KEY (first key encrypts, all decrypt)."""
        return self._cipher

    def access_token_for(self, portal_id: int) -> str:
        """A valid access token for the portal, refreshed when less than the margin remains.

        Raises PortalDisconnected (PortalNotInstalled when never installed) or TokenUnavailable.
        """
        row = _read_row(portal_id)
        if _fresh(row, self._settings):
            return self._decrypt(row.access_token, portal_id)
        return self._refresh(portal_id, rejected=None)

    def refresh_after_unauthorized(self, portal_id: int, rejected_token: str) -> str:
        """The token to retry with after HubSpot answered 401 to ``rejected_token``.

        Refreshes only if the stored token is still the rejected one; otherwise (another worker has
        refreshed already) returns the stored token. Same exceptions as `access_token_for`.
        """
        return self._refresh(portal_id, rejected=rejected_token)

    def _refresh(self, portal_id: int, rejected: str | None) -> str:
        settings = self._settings
        try:
            with own_transaction() as session:
                locked = _lock_row(session, portal_id, settings.token_lock_timeout_ms)
                row = _connected(locked, portal_id)
                token = self._refresh_locked(row, rejected)
        except OperationalError as exc:
            if getattr(exc.orig, "pgcode", None) != LOCK_NOT_AVAILABLE:
                raise
            return self._after_lock_timeout(portal_id, rejected)
        if token is None:  # the row was marked disconnected and committed
            raise PortalDisconnected(portal_id, row.disconnect_reason)
        return token

    def _refresh_locked(self, row: OAuthToken, rejected: str | None) -> str | None:
        """Under the row lock: the token to use, or None after marking the portal disconnected."""
        current = self._decrypt(row.access_token, row.portal_id)
        if _keep(row, current, rejected, self._settings):
            return current  # fresh, or someone refreshed while we waited for the lock
        try:
            grant = oauth_api.refresh(
                self._settings, self._decrypt(row.refresh_token, row.portal_id)
            )
        except oauth_api.InvalidGrant as exc:
            self._metrics.incr("token_refreshes_total", {"result": "invalid_grant"})
            _disconnect(row, exc.reason)
            return None
        except oauth_api.OAuthAPIError as exc:
            self._metrics.incr("token_refreshes_total", {"result": "failed"})
            log.warning("token refresh failed: %s", exc, extra={"portal_id": row.portal_id})
            return self._fallback(row, current, rejected, str(exc))
        self._metrics.incr("token_refreshes_total", {"result": "refreshed"})
        cipher = self._cipher
        row.access_token = cipher.encrypt(grant.access_token, row.portal_id)
        if grant.refresh_token:
            row.refresh_token = cipher.encrypt(grant.refresh_token, row.portal_id)
        row.expires_at = grant.expires_at
        row.refreshed_at = row.updated_at = _now()
        log.info("refreshed access token", extra={"portal_id": row.portal_id})
        return grant.access_token

    def _fallback(self, row: OAuthToken, current: str, rejected: str | None, why: str) -> str:
        """The stored token when it can still serve a call; else TokenUnavailable."""
        rejected_now = rejected is not None and _same(current, rejected)
        if not rejected_now and row.expires_at - _now() > MIN_USABLE:
            return current
        raise TokenUnavailable(f"portal {row.portal_id}: no usable access token ({why})")

    def _after_lock_timeout(self, portal_id: int, rejected: str | None) -> str:
        """Another process holds the refresh lock for too long: use what is stored if it works."""
        row = _read_row(portal_id)
        current = self._decrypt(row.access_token, portal_id)
        if _keep(row, current, rejected, self._settings):
            return current
        return self._fallback(row, current, rejected, "the refresh lock is busy")

    def install_from_code(self, code: str, redirect_uri: str) -> InstalledPortal:
        """The OAuth callback's work: exchange the code, introspect for the portal, store.

        Raises the oauth_api errors (InvalidGrant: the code is dead) and SQLAlchemy errors.
        """
        settings = self._settings
        grant = oauth_api.exchange_code(settings, code, redirect_uri)
        info = oauth_api.introspect(settings, grant.access_token)
        if grant.hub_id is not None and grant.hub_id != info.hub_id:
            raise oauth_api.OAuthBadAnswer(
                "the token answer and introspection name different portals"
            )
        if info.client_id is not None and info.client_id != settings.hubspot_client_id:
            raise oauth_api.OAuthBadAnswer("the new token belongs to another app")
        return self.store_install(grant, info)

    def store_install(
        self, grant: oauth_api.TokenGrant, info: oauth_api.TokenInfo
    ) -> InstalledPortal:
        """Upsert the portal's row with encrypted tokens; a new install reconnects a portal."""
        if not grant.refresh_token:
            raise ValueError("an install needs a refresh token")
        portal_id, cipher, now = info.hub_id, self._cipher, _now()
        values = {
            "access_token": cipher.encrypt(grant.access_token, portal_id),
            "refresh_token": cipher.encrypt(grant.refresh_token, portal_id),
            "expires_at": grant.expires_at,
            "hub_domain": info.hub_domain,
            "installed_by": info.user,
            "scopes": " ".join(info.scopes) or None,
            "app_id": info.app_id,
            "disconnected_at": None,
            "disconnect_reason": None,
            "updated_at": now,
        }
        with own_transaction() as session:
            before = _lock_row(session, portal_id, self._settings.token_lock_timeout_ms)
            statement = insert(OAuthToken).values(portal_id=portal_id, created_at=now, **values)
            session.execute(
                statement.on_conflict_do_update(constraint="uq_oauth_tokens_portal_id", set_=values)
            )
        reconnected = before is not None and before.disconnected_at is not None
        log.info(
            "portal installed",
            extra={
                "portal_id": portal_id,
                "hub_domain": info.hub_domain,
                "reconnected": reconnected,
            },
        )
        return InstalledPortal(portal_id, info.hub_domain, reconnected)

    def _decrypt(self, stored: str, portal_id: int) -> str:
        try:
            return self._cipher.decrypt(stored, portal_id)
        except DecryptionError as exc:
            log.error("stored token cannot be decrypted", extra={"portal_id": portal_id})
            raise TokenUnavailable(f"portal {portal_id}: {exc}") from None
