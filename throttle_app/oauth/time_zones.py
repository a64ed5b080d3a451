"""Each portal's own time zone: learned at install, refreshed daily by the cleaner, read by the
release policies (`portal_time_zone`).

`oauth_tokens.time_zone` holds the IANA name HubSpot's account details report for the portal
(hubspot/account_info.py), only ever a name this process's zone database could load; NULL means
"not known yet", which the policies read as UTC. `time_zone_checked_at` says when to ask again:
- at install (`PortalZones.learn`, from the OAuth callback) the zone is asked once; whatever
  happens (HubSpot down, slow, a 401/403 for a missing scope), the install succeeds: a failure
  leaves the zone as it was and `time_zone_checked_at` NULL, so the cleaner's next pass asks;
- each cleaner pass (`PortalZones.refresh_due`) asks for at most THROTTLE_TIME_ZONE_REFRESH_BATCH
  connected portals whose zone was last checked 24 h ago or more (never checked first), one
  claimed at a time (FOR UPDATE SKIP LOCKED: concurrent passes never ask twice). A claim moves
  `time_zone_checked_at` to 23 h ago, so a failed ask is retried an hour later and never blocks
  the other portals; an answer sets it to now. HubSpot unreachable or failing ends the pass's
  asks at once, so a pass costs at most one call's timeouts then.
- a zone HubSpot reports that we cannot load is logged and ignored: the stored zone stays.
Disconnected portals are never asked.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from throttle_app.config import Settings
from throttle_app.extensions import own_transaction
from throttle_app.hubspot import account_info
from throttle_app.hubspot.callbacks import HubSpotCallError, HubSpotClient, NotSent, Transient
from throttle_app.hubspot.http import session_timeout
from throttle_app.models import OAuthToken
from throttle_app.oauth.tokens import TokenError, TokenStore

REFRESH_EVERY = timedelta(hours=24)
RETRY_AFTER = timedelta(hours=1)  # after a failed ask
BUCKET_WAIT_SECONDS = 0.25  # the longest wait for the portal's bucket: a busy portal waits a pass

log = logging.getLogger(__name__)

_CLAIM = text(
    """
    UPDATE oauth_tokens SET time_zone_checked_at = now() - make_interval(secs => :backdate)
    WHERE id = (SELECT id FROM oauth_tokens
                WHERE disconnected_at IS NULL
                  AND (time_zone_checked_at IS NULL
                       OR time_zone_checked_at <= now() - make_interval(secs => :every))
                ORDER BY time_zone_checked_at NULLS FIRST, id
                LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING portal_id
    """
)

# The zone as it was (for the log) and the new one, in one statement under the row lock.
_STORE = text(
    """
    UPDATE oauth_tokens t SET time_zone = coalesce(:zone, t.time_zone),
           time_zone_checked_at = now()
    FROM (SELECT id, time_zone FROM oauth_tokens WHERE portal_id = :portal_id FOR UPDATE) old
    WHERE t.id = old.id
    RETURNING old.time_zone
    """
)


def portal_time_zone(session: Session, portal_id: int) -> str | None:
    """The portal's IANA time zone as HubSpot last reported it (e.g. "America/New_York"), or
    None when it is not known (never asked, HubSpot did not answer, or no install): use UTC.

    A returned name always loaded with `zoneinfo.ZoneInfo` when it was stored. Reads through
    the caller's session (one indexed lookup by portal id); disconnected portals keep theirs."""
    return session.scalar(select(OAuthToken.time_zone).where(OAuthToken.portal_id == portal_id))


class PortalZones:
    """Asks HubSpot for portals' time zones and stores them (see the module docstring).

    Built once per process by the composition root with the process's HubSpot client (so every
    ask takes a token from the portal's bucket) and token store."""

    def __init__(self, settings: Settings, client: HubSpotClient, tokens: TokenStore) -> None:
        self._settings = settings
        self._client = client
        self._tokens = tokens
        self.batch = settings.time_zone_refresh_batch

    def learn(self, portal_id: int) -> str | None:
        """At install: the portal's zone, asked and stored; None when it is not known.

        Never raises: the install must not depend on this call."""
        try:
            return self._ask(portal_id)
        except (TokenError, HubSpotCallError, SQLAlchemyError) as exc:
            log.warning(
                "could not learn the portal's time zone at install (UTC until a refresh works): %s",
                _reason(exc),
                extra={"portal_id": portal_id},
            )
            return None

    def refresh_due(self) -> int:
        """One cleaner pass's asks: at most `batch` connected portals whose zone is due, one
        claim each. Returns how many were asked. Raises only if the claim itself fails."""
        asked = 0
        while asked < self.batch:
            portal_id = self._claim()
            if portal_id is None:
                break
            asked += 1
            try:
                self._ask(portal_id)
            except (NotSent, Transient) as exc:
                log.warning(
                    "time zone refresh stopped for this pass: %s",
                    _reason(exc),
                    extra={"portal_id": portal_id},
                )
                break  # HubSpot is unreachable or failing: the other portals wait a pass
            except (TokenError, HubSpotCallError, SQLAlchemyError) as exc:
                log.warning(
                    "time zone refresh failed; retried in %s",
                    RETRY_AFTER,
                    extra={"portal_id": portal_id, "reason": _reason(exc)},
                )
        return asked

    def _claim(self) -> int | None:
        params = {
            "every": REFRESH_EVERY.total_seconds(),
            "backdate": (REFRESH_EVERY - RETRY_AFTER).total_seconds(),
        }
        with own_transaction() as session:
            return session.execute(_CLAIM, params).scalar_one_or_none()

    def _ask(self, portal_id: int) -> str | None:
        """Ask HubSpot, store the answer; the portal's zone afterwards (None: unknown)."""
        access_token = self._tokens.access_token_for(portal_id)
        deadline = time.monotonic() + BUCKET_WAIT_SECONDS + sum(session_timeout(self._settings))
        details = account_info.read_account_details(self._client, portal_id, access_token, deadline)
        zone = details.time_zone
        lock_timeout = f"{self._settings.token_lock_timeout_ms}ms"  # a refresh may hold the row
        with own_transaction() as session:
            session.execute(select(func.set_config("lock_timeout", lock_timeout, True)))
            before = session.execute(_STORE, {"zone": zone, "portal_id": portal_id}).scalar()
        if zone is not None and zone != before:
            log.info(
                "portal time zone %s",
                "learned" if before is None else "changed",
                extra={"portal_id": portal_id, "time_zone": zone, "previous_time_zone": before},
            )
        return zone or before


def _reason(exc: Exception) -> str:
    """A short reason for the log (the exceptions' texts carry no token)."""
    return f"{type(exc).__name__}: {exc}"[:300]
