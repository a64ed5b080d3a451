"""Releases per queue and minute, in Redis: the operator page's "releases per minute" chart.

Each release job adds the executions it completed to its queue's hash (`throttle:queue_releases:
<queue id>`, one field per minute since the epoch) when it ends, so a job's releases count in the
minute it ended (a job runs at most THROTTLE_RELEASE_JOB_SECONDS). The hash expires KEEP_SECONDS
after its last write; reading a page of queues is one pipelined HMGET each. Not a source of truth
(a Redis wipe empties the chart, nothing else): the table's terminal rows have no index by queue,
and counting them per page would read every row finished in the hour, whatever the page.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

KEY = "throttle:queue_releases:%d"
KEEP_SECONDS = 2 * 3600
MINUTES = 60


def add_releases(pipe: Any, queue_id: int, count: int, at: float) -> None:
    """Queue `count` releases of `queue_id` at epoch second `at` on a Redis pipeline."""
    if count <= 0:
        return
    key = KEY % int(queue_id)
    pipe.hincrby(key, str(int(at // 60)), int(count))
    pipe.expire(key, KEEP_SECONDS)


def releases_per_minute(
    connection: Any, queue_ids: Iterable[int], now: float, minutes: int = MINUTES
) -> dict[int, list[int]]:
    """Each queue's releases in each of the last `minutes` minutes (the current one last), at
    epoch second `now`. Raises on Redis errors (the caller shows the chart as unavailable)."""
    ids = [int(queue_id) for queue_id in queue_ids]
    last = int(now // 60)
    fields = [str(minute) for minute in range(last - minutes + 1, last + 1)]
    pipe = connection.pipeline(transaction=False)
    for queue_id in ids:
        pipe.hmget(KEY % queue_id, fields)
    return {
        queue_id: [int(value or 0) for value in values]
        for queue_id, values in zip(ids, pipe.execute(), strict=True)
    }
