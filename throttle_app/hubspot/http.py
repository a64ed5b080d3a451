"""The one HTTP session every call to HubSpot goes through: timeouts, User-Agent, pooling.

Callers pass `timeout=session_timeout(settings)` on every request; nothing waits forever.
"""

from __future__ import annotations

import math

import requests
from requests.adapters import HTTPAdapter

from throttle_app.config import Settings

USER_AGENT = "throttle/0.1 (+HubSpot workflow throttle)"

_sessions: dict[int, requests.Session] = {}


def hubspot_session() -> requests.Session:
    """This process's pooled session (created after fork, so never shared across processes)."""
    import os

    pid = os.getpid()
    session = _sessions.get(pid)
    if session is None:
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        _sessions.clear()
        _sessions[pid] = session
    return session


def session_timeout(settings: Settings) -> tuple[float, float]:
    """(connect, read) timeouts for one HubSpot call."""
    return (settings.http_connect_timeout_seconds, settings.http_read_timeout_seconds)


def parse_retry_after(header: str | None) -> float | None:
    """HubSpot's Retry-After in seconds (its unit is undocumented; seconds is HTTP's), or None
    when absent or unreadable. float() reads "nan" and "inf" too: those count as unreadable,
    since NaN would pass any clamp. Callers clamp the value."""
    if header is None:
        return None
    try:
        value = float(header)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def error_message(response: requests.Response) -> str:
    """The message of a HubSpot error answer (its `message`, else its `category`), short."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(payload, dict):
        return str(payload.get("message") or payload.get("category") or payload)[:500]
    return str(payload)[:500]
