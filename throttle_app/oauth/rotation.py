"""The stored tokens from the operator's side: which portals, under which keys, and moving
every row to the current key (`flask throttle portals`, `flask tokens rotate`,
GET /api/oauth/portals).

Nothing here returns a token or a ciphertext.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select

from throttle_app.extensions import own_transaction
from throttle_app.models import OAuthToken
from throttle_app.oauth.cipher import DecryptionError, TokenCipher, stored_key_id, stored_prefix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortalStatus:
    """One portal as operators see it (no token, no ciphertext)."""

    portal_id: int
    hub_domain: str | None
    installed_by: str | None
    scopes: str | None
    installed_at: datetime
    disconnected_at: datetime | None
    disconnect_reason: str | None
    expires_at: datetime
    refreshed_at: datetime | None
    time_zone: str | None  # the portal's IANA zone (None: not known yet, so UTC)
    time_zone_checked_at: datetime | None
    key_ids: tuple[str, ...]  # the key ids of the stored values, e.g. ("1a2b3c4d",)

    @property
    def connected(self) -> bool:
        return self.disconnected_at is None

    def to_json(self) -> dict[str, object]:
        fields = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in vars(self).items()}
        return {**fields, "connected": self.connected, "key_ids": list(self.key_ids)}


def _key_id(stored: str) -> str:
    return stored_key_id(stored) or "?"


def list_portals() -> list[PortalStatus]:
    """Every portal with an install, ordered by portal id."""
    with own_transaction() as session:
        rows = session.scalars(select(OAuthToken).order_by(OAuthToken.portal_id)).all()
    return [
        PortalStatus(
            portal_id=row.portal_id,
            hub_domain=row.hub_domain,
            installed_by=row.installed_by,
            scopes=row.scopes,
            installed_at=row.created_at,
            disconnected_at=row.disconnected_at,
            disconnect_reason=row.disconnect_reason,
            expires_at=row.expires_at,
            refreshed_at=row.refreshed_at,
            time_zone=row.time_zone,
            time_zone_checked_at=row.time_zone_checked_at,
            key_ids=tuple(dict.fromkeys(map(_key_id, (row.access_token, row.refresh_token)))),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class RotationReport:
    key_id: str  # the key every rotated value is now encrypted under
    rotated: int
    failed: tuple[int, ...]  # portals whose values no configured key decrypts
    remaining: int  # rows still under another key (failed, or locked during every pass)


def rotate_keys(
    cipher: TokenCipher, batch_size: int = 100, passes: int = 3, pause_seconds: float = 0.5
) -> RotationReport:
    """Re-encrypt every row not yet under the first TOKEN_ENCRYPTION_KEY, one commit per batch.

    Safe while the service runs: rows locked by a refresh are skipped (SKIP LOCKED) and retried
    in a later pass. Every process must already run with the new key list first, or a refresh
    in a process with the old list writes under the old key again.
    """
    rotated, failed = 0, set[int]()
    remaining = 0
    for number in range(passes):
        rotated += _rotation_pass(cipher, batch_size, failed)
        remaining = _count_not_current(cipher)
        if remaining <= len(failed):
            break
        if number + 1 < passes:
            time.sleep(pause_seconds)
    log.info("token keys rotated", extra={"key_id": cipher.current_key_id, "rotated": rotated})
    return RotationReport(cipher.current_key_id, rotated, tuple(sorted(failed)), remaining)


def _not_current(cipher: TokenCipher) -> ColumnElement[bool]:
    prefix = stored_prefix(cipher.current_key_id) + "%"
    return or_(OAuthToken.access_token.not_like(prefix), OAuthToken.refresh_token.not_like(prefix))


def _count_not_current(cipher: TokenCipher) -> int:
    with own_transaction() as session:
        query = select(func.count()).select_from(OAuthToken).where(_not_current(cipher))
        return session.scalar(query) or 0


def _rotation_pass(cipher: TokenCipher, batch_size: int, failed: set[int]) -> int:
    rotated, last_id = 0, 0
    while True:
        with own_transaction() as session:
            rows = session.scalars(
                select(OAuthToken)
                .where(
                    OAuthToken.id > last_id,
                    _not_current(cipher),
                    OAuthToken.portal_id.not_in(failed),  # no key decrypts these: no retry
                )
                .order_by(OAuthToken.id)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                try:
                    plain = [
                        cipher.decrypt(v, row.portal_id)
                        for v in (row.access_token, row.refresh_token)
                    ]
                except DecryptionError:
                    failed.add(row.portal_id)
                    continue
                row.access_token, row.refresh_token = (
                    cipher.encrypt(v, row.portal_id) for v in plain
                )
                rotated += 1
        if len(rows) < batch_size:
            return rotated
        last_id = rows[-1].id
