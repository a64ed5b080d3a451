"""Coalesces the web's wake-ups of newly admitted queues into one Redis call."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from throttle_app.deferred_flush import DeferredFlush
from throttle_app.release.schedule import ReleaseSchedule

log = logging.getLogger(__name__)


class WakeBatcher:
    """Coalesces the web's wake-ups: the queues of many admission batches, one Redis call.

    `add` returns at once; a timer (a greenlet under gevent) sends the collected queue ids
    `delay` seconds later. Best effort: a lost wake-up is restored by the cleaner.
    """

    def __init__(self, schedule: ReleaseSchedule, delay: float = 0.02) -> None:
        self._schedule = schedule
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._deferred = DeferredFlush(delay, self.flush)

    def add(self, queue_ids: Iterable[int]) -> None:
        with self._lock:
            self._pending.update(queue_ids)
        self._deferred.request()

    def flush(self) -> None:
        with self._lock:
            queue_ids, self._pending = self._pending, set()
        if not queue_ids:
            return
        try:
            self._schedule.wake_unscheduled(sorted(queue_ids))
        except Exception as exc:  # Redis trouble must never fail an admission
            log.warning("could not wake queues %s: %s", sorted(queue_ids), exc)
