"""The release policy at the claim: how big a window is (burst or spread) and whether it may open
at a given instant (days, window, start time). Pure: claims.py passes the database's clock.

Spread releases one execution every T/N. A window of k executions every k*T/N keeps the rate;
k is 1 unless T/N is shorter than the portal's bucket lets calls go (its emission interval),
then the fewest that keep both promises: k divides N (so no span of T holds more than N: N/k
windows of k) and k*T/N is at least the bucket's interval. When no proper divisor does, k = N
and the queue releases as burst.
"""

from __future__ import annotations

import functools
from datetime import datetime
from zoneinfo import ZoneInfo

from throttle_app.release.policy import ReleasePolicy, next_open


@functools.lru_cache(maxsize=4096)
def window_size(
    mode: str, max_throughput: int, period_seconds: float, min_call_interval: float
) -> tuple[int, float]:
    """(budget, period in seconds) of one window for the effective rate N per T."""
    if mode != "spread" or max_throughput <= 1:
        return max_throughput, period_seconds
    for size in range(1, max_throughput + 1):
        if max_throughput % size == 0 and size * period_seconds / max_throughput >= (
            min_call_interval
        ):
            return size, size * period_seconds / max_throughput
    return max_throughput, period_seconds


def may_open_at(policy: ReleasePolicy, zone: ZoneInfo, earliest: datetime) -> datetime | None:
    """The first instant at or after `earliest` at which the policy lets a window open (None:
    never again). A window opens only inside an allowed span, so none starts after the span's
    end (policy.open_until)."""
    if not policy.restricts_time:
        return earliest
    return next_open(policy, zone, earliest)


def is_open(policy: ReleasePolicy, zone: ZoneInfo, instant: datetime) -> bool:
    """The policy allows releasing at `instant` (an open window may go on claiming)."""
    return not policy.restricts_time or next_open(policy, zone, instant) == instant
