"""The one HTTP session every call to HubSpot goes through: timeouts, User-Agent, pooling.

Callers pass `timeout=session_timeout(settings)` on every request; nothing waits forever.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

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


class SentBody:
    """A request body that says when it has been written in full: `on_sent()` runs once, when
    the HTTP library reads past its end, which urllib3 does only after the last block went to
    the socket. It has a length, so the request carries Content-Length (never chunked)."""

    def __init__(self, payload: bytes, on_sent: Callable[[], None]) -> None:
        self._payload = payload
        self._at = 0
        self._on_sent: Callable[[], None] | None = on_sent

    def __len__(self) -> int:
        return len(self._payload)

    def read(self, size: int | None = -1) -> bytes:
        if self._at >= len(self._payload):
            if self._on_sent is not None:
                on_sent, self._on_sent = self._on_sent, None
                on_sent()
            return b""
        end = len(self._payload) if size is None or size < 0 else self._at + size
        chunk = self._payload[self._at : end]
        self._at += len(chunk)
        return chunk


def json_body(body: object, on_sent: Callable[[], None] | None = None) -> bytes | SentBody | None:
    """`body` as a JSON request body (None: no body); with `on_sent`, one that says when it has
    been written in full."""
    if body is None:
        return None
    payload = json.dumps(body, allow_nan=False).encode()
    return payload if on_sent is None else SentBody(payload, on_sent)


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
