"""What the release tests measure at the fake HubSpot: its own completion timestamps."""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


# Windows open T after the previous window's send *started* at the sending side (claims.py), so
# consecutive windows' calls are T (plus a few milliseconds) apart when they leave. A receiver
# (the fake HubSpot, the TCP proxy's wire log) stamps a call when its thread gets to it: on a
# loaded 2-core machine one call can wait tens of milliseconds longer than the next, and the gap
# it measures falls short of T by that much. Checks made at a receiver count spans this much
# shorter than T; the exact check, on the sending side's own times, is
# tests/release/test_window_properties.py.
RECEIPT_JITTER = 0.05


def max_in_window(times: list[float], window: float) -> int:
    """The most completions in any span of `window` seconds (a span is half-open, [t, t + T))."""
    times = sorted(times)
    if not times:
        return 0
    return max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))


def sustained_rate(completions: list[dict], prefix: str, max_throughput: int) -> float:
    """Completions per second of the callbacks starting with `prefix`, each counted once, from
    the end of the first window (the N-th first completion) to the last first completion."""
    first_seen: dict[str, float] = {}
    for record in completions:
        if record["callback_id"].startswith(prefix):
            first_seen.setdefault(record["callback_id"], record["time"])
    times = sorted(first_seen.values())
    span = times[-1] - times[max_throughput - 1]
    return (len(times) - max_throughput) / span


def batch_gaps(completions: list[dict], prefix: str) -> list[float]:
    """Seconds between the first completions of consecutive HubSpot calls (batches) of the
    callbacks starting with `prefix`: T plus the send time when the engine is on time; a
    longer gap shows which window opened late."""
    starts: dict[int, float] = {}
    for record in completions:
        if record["callback_id"].startswith(prefix):
            batch = record["batch_id"]
            starts[batch] = min(starts.get(batch, record["time"]), record["time"])
    times = sorted(starts.values())
    return [round(later - earlier, 3) for earlier, later in itertools.pairwise(times)]


def wait_until(found: Callable[[], T], timeout: float, every: float = 0.05) -> T:
    """`found()` once it is truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not reached within {timeout}s")
