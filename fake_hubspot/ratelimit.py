"""HubSpot's per-portal rolling-window request limit (TEN_SECONDLY_ROLLING)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """The outcome of counting one request against its portal's window."""

    allowed: bool
    limit: int
    remaining: int
    window: float
    retry_after: int  # whole seconds until a new call would be admitted (0 when allowed)

    def headers(self) -> dict[str, str]:
        """The ``X-HubSpot-RateLimit-*`` headers HubSpot sends with every API answer."""
        return {
            "X-HubSpot-RateLimit-Max": str(self.limit),
            "X-HubSpot-RateLimit-Remaining": str(self.remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(round(self.window * 1000)),
        }


class RollingWindow:
    """Counts requests per portal in a rolling window. Not thread-safe: callers hold a lock."""

    def __init__(self) -> None:
        self._hits: dict[int, deque[float]] = {}

    def clear(self) -> None:
        """Forget every request."""
        self._hits.clear()

    def _pruned(self, portal_id: int, now: float, window: float) -> deque[float]:
        hits = self._hits.setdefault(portal_id, deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        return hits

    def hit(self, portal_id: int, now: float, limit: int, window: float) -> Verdict:
        """Count one request (admitted or not: every request counts) and judge it."""
        hits = self._pruned(portal_id, now, window)
        hits.append(now)
        count = len(hits)
        allowed = count <= limit
        retry_after = 0
        if not allowed:
            # The next call is admitted once count - limit + 1 of these hits have left the window.
            leaving = hits[count - limit]
            retry_after = max(1, math.ceil(leaving + window - now))
        return Verdict(allowed, limit, max(0, limit - count), window, retry_after)
