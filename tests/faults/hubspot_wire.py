"""What the service sent towards HubSpot, read off the wire by the TCP proxy in front of the fake.

Every callbackId in a request body is one send of that callback, timed when its bytes reached
the proxy: a send that started, whatever became of it (answered, timed out, reset, or never
forwarded). This is the count invariant 3 bounds ("never more than N sends of a queue's
callbacks started in any span of T"), and it does not depend on what the fake recorded.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict

from tests.faults.invariants import busiest_span, by_prefix
from tests.support.tcp_proxy import UP

_CALLBACK_ID = re.compile(rb'"callbackId"\s*:\s*"([^"\\]{1,255})"')
_REQUEST_LINE = re.compile(rb"(?:^|\r\n)POST /automation/v4/actions/callbacks/complete ")
_TAIL_BYTES = 512  # a callbackId split between two chunks is found in the next one


class WireLog:
    """A TcpProxy `on_data` tap recording callback sends and completion calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, bytes] = defaultdict(bytes)
        self.sends: list[tuple[str, float]] = []  # (callbackId, time.time())
        self.calls: list[float] = []

    def __call__(self, direction: str, link_id: int, data: bytes) -> None:
        if direction != UP:
            return
        now = time.time()
        with self._lock:
            buffer = self._pending[link_id] + data
            consumed = 0
            for match in _CALLBACK_ID.finditer(buffer):
                self.sends.append((match.group(1).decode(), now))
                consumed = match.end()
            self.calls.extend(now for _ in _REQUEST_LINE.finditer(data))  # headers: one write
            rest = buffer[consumed:]
            self._pending[link_id] = rest[-_TAIL_BYTES:]

    def send_times(self) -> dict[str, list[float]]:
        """Send start times by queue (the callback id's prefix)."""
        with self._lock:
            return by_prefix(self.sends)

    def busiest(self, prefix: str, span: float) -> int:
        """The most sends of the queue `prefix` that started in any span of `span` seconds."""
        return busiest_span(self.send_times().get(prefix, []), span)[0]
