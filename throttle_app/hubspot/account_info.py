"""HubSpot's account details (`GET /account-info/v3/details`): the portal's own time zone.

The call goes through `HubSpotClient.send`, so it takes a token from the portal's bucket first
and has the connect and read timeouts of every HubSpot call; its failures are the client's typed
failures (`Unauthorized`, `Transient`, `Refused` for a 403 when the scope is missing, ...), plus
`AccountInfoBadAnswer` for a 2xx we cannot read. The zone HubSpot reports (an IANA name; legacy
aliases such as ``US/Eastern`` occur) is kept only if this process's zone database knows it:
anything else is reported as unknown (None), never raised.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from throttle_app.hubspot.callbacks import HubSpotCallError, HubSpotClient
from throttle_app.input_fields import bigint

DETAILS_PATH = "/account-info/v3/details"
MAX_ZONE_LENGTH = 64  # oauth_tokens.time_zone
# An IANA name's shape: "UTC", "America/New_York", "America/Argentina/Buenos_Aires", "Etc/GMT+5".
# Bounded, so it runs in linear time on whatever HubSpot sends; zoneinfo then decides.
_ZONE_SHAPE = re.compile(r"[A-Za-z0-9_+\-]{1,32}(?:/[A-Za-z0-9_+\-]{1,32}){0,2}")
# Files in the zone directory that are not zones of their own (the host's zone, a template).
_NOT_ZONES = frozenset({"localtime", "posixrules"})

log = logging.getLogger(__name__)


class AccountInfoBadAnswer(HubSpotCallError):
    """HubSpot answered 2xx with a body we cannot use (not JSON, or another portal's details)."""


@dataclass(frozen=True)
class AccountDetails:
    """What we use of a portal's account details."""

    portal_id: int
    time_zone: str | None  # a zone zoneinfo can load; None when HubSpot's is missing or unknown
    reported_time_zone: str | None  # what HubSpot sent (cut to 64 characters), for the logs
    utc_offset: str | None  # "-05:00": informative only (it changes with DST)
    ui_domain: str | None


def known_time_zone(name: object) -> str | None:
    """``name`` when it is a time zone this process can load, else None (never raises)."""
    if not isinstance(name, str) or len(name) > MAX_ZONE_LENGTH or name in _NOT_ZONES:
        return None
    if not _ZONE_SHAPE.fullmatch(name):
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown, a directory, unreadable
        return None
    return name


def read_account_details(
    client: HubSpotClient, portal_id: int, access_token: str, deadline: float | None = None
) -> AccountDetails:
    """The portal's account details, through the portal's bucket (`HubSpotClient.send`).

    `deadline` (time.monotonic()) bounds the bucket wait and the call. Raises the client's
    HubSpotCallError subclasses, or AccountInfoBadAnswer."""
    response = client.send(portal_id, "GET", DETAILS_PATH, access_token, None, deadline)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise AccountInfoBadAnswer(f"HubSpot answered {response.status_code} without a JSON object")
    answered_for = bigint(body.get("portalId"))
    if answered_for is not None and answered_for != portal_id:
        raise AccountInfoBadAnswer("HubSpot sent the account details of another portal")
    reported = _text(body.get("timeZone"))
    zone = known_time_zone(body.get("timeZone"))
    if zone is None:
        log.warning(
            "HubSpot reported a time zone we do not know; treated as unknown",
            extra={"portal_id": portal_id, "time_zone": reported},
        )
    return AccountDetails(
        portal_id=portal_id,
        time_zone=zone,
        reported_time_zone=reported,
        utc_offset=_text(body.get("utcOffset")),
        ui_domain=_text(body.get("uiDomain")),
    )


def _text(value: object) -> str | None:
    return value[:MAX_ZONE_LENGTH] if isinstance(value, str) and value else None
