"""A flush that runs once, a fixed delay after the first request since it last ran.

The web batches work off the request path with it: webhook tallies into the prometheus metrics
(throttle_app/telemetry/web_metrics.py) and admitted queues into one wake-up call
(throttle_app/release/schedule.py, WakeBatcher).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class DeferredFlush:
    """Calls `flush` `delay` seconds after the first `request()` since its last call; requests
    in between ride along. Request after adding the data: a flush that is already due then
    takes it. The timer is a thread (a greenlet under gevent), started outside the lock, as
    starting it yields under gevent."""

    def __init__(self, delay: float, flush: Callable[[], None]) -> None:
        self._delay = delay
        self._flush = flush
        self._lock = threading.Lock()
        self._armed = False

    def request(self) -> None:
        if self._armed:  # the common case, without the lock: a due flush takes the new data
            return
        with self._lock:
            if self._armed:
                return
            self._armed = True
        timer = threading.Timer(self._delay, self._fire)
        timer.daemon = True
        timer.start()

    def _fire(self) -> None:
        with self._lock:
            self._armed = False
        self._flush()
