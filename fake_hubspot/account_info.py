"""The account details endpoint: ``GET /account-info/v3/details`` (and its date-versioned twin
``/account-info/2026-03/details``).

A call goes through, like HubSpot's: bearer-token check (401), the portal's rolling rate window
(429; the call counts like every other authenticated call), scope check (403 without ``oauth``),
then the fault setting ``account_info_status`` (every call answers that status), and finally the
portal's details, with its zone from ``time_zones`` (or ``default_time_zone``).
``account_info_latency`` delays every answer.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from fake_hubspot.callbacks import admit, rate_limited
from fake_hubspot.messages import Reply, Request, api_error, json_reply, server_error
from fake_hubspot.state import Hub

PATHS = ("/account-info/v3/details", "/account-info/2026-03/details")
REQUIRED_SCOPE = "oauth"


def details(hub: Hub, req: Request) -> Reply:
    """Answer one account-details call."""
    with hub.lock:
        reply = _decide(hub, req)
        reply.delay = hub.settings.account_info_latency
    return reply


def _decide(hub: Hub, req: Request) -> Reply:
    admitted = admit(hub, req, "GET")
    if isinstance(admitted, Reply):
        return admitted
    token, verdict = admitted
    settings = hub.settings
    if not verdict.allowed:
        reply = rate_limited(hub, verdict)
    elif REQUIRED_SCOPE not in token.scopes:
        reply = api_error(
            403,
            "This app hasn't been granted all required scopes to make this call.",
            "MISSING_SCOPES",
            errors=[{"context": {"requiredGranularScopes": [REQUIRED_SCOPE]}}],
        )
    elif settings.account_info_status is not None:
        status = settings.account_info_status
        reply = server_error(status) if status >= 500 else api_error(status, "refused", "ERROR")
    else:
        reply = json_reply(200, _details(token.portal_id, hub))
    reply.headers.update(verdict.headers())
    return reply


def _details(portal_id: int, hub: Hub) -> dict[str, object]:
    zone = hub.settings.time_zones.get(portal_id, hub.settings.default_time_zone)
    offset_ms = _offset_ms(zone)
    sign, minutes = ("-" if offset_ms < 0 else "+"), abs(offset_ms) // 60_000
    return {
        "portalId": portal_id,
        "accountType": "STANDARD",
        "timeZone": zone,
        "companyCurrency": "USD",
        "additionalCurrencies": [],
        "utcOffset": f"{sign}{minutes // 60:02d}:{minutes % 60:02d}",
        "utcOffsetMilliseconds": offset_ms,
        "uiDomain": "app.hubspot.com",
        "dataHostingLocation": "na1",
    }


def _offset_ms(zone: str) -> int:
    """The zone's offset now, in milliseconds (0 for a zone this machine does not know)."""
    try:
        offset = datetime.now(ZoneInfo(zone)).utcoffset()
    except (KeyError, ValueError, OSError):
        return 0
    return int(offset.total_seconds() * 1000) if offset is not None else 0
