"""DeferredFlush: many requests, one flush a delay after the first; the next request arms again."""

from __future__ import annotations

import threading
import time

from throttle_app.deferred_flush import DeferredFlush


def test_requests_within_the_delay_share_one_flush_and_a_later_one_gets_its_own():
    flushed = []
    done = threading.Event()

    def flush() -> None:
        flushed.append(time.monotonic())
        done.set()

    deferred = DeferredFlush(0.05, flush)
    started = time.monotonic()
    for _ in range(100):
        deferred.request()
    assert done.wait(2)
    time.sleep(0.1)  # a second timer would have fired by now
    assert len(flushed) == 1 and flushed[0] - started >= 0.05
    done.clear()
    deferred.request()
    assert done.wait(2)
    assert len(flushed) == 2
