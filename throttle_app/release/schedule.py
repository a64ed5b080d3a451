"""When each queue's release job runs: millisecond wake-ups in Redis, promoted to RQ jobs.

RQ's own delayed jobs are scheduled in whole seconds and polled once a second, too coarse for
"50 per second". So wake-ups live in one sorted set (queue id -> due time in ms, Redis clock);
`ZADD LT` keeps the earliest per queue, so bursts collapse. A release clock (one small loop per
worker process, see throttle_app/release/clock.py) pops due wake-ups atomically and enqueues
`jobs.release(queue_id)` with the deterministic job id `release-<queue id>` (job_records.py), so
a queue has at most one job queued. Two can run at once when a job that looked stale is
replaced while it still works; the queue row's lock in claims.py keeps them within one budget
(tests/release/test_releaser.py::test_concurrent_claims_never_exceed_the_window). Nothing here is
the source of truth: a lost wake-up (Redis wiped) is restored by the cleaner from PostgreSQL, and
a spare one is harmless.

A running release job keeps a watch on its queue (a second sorted set, queue id -> the time by
which it renews its claim or ends, see leases.py). A watch that falls due means the job's worker
died (or lost its lease): the clock replaces the job at once, however fresh its last heartbeat,
so a killed worker's queue waits for its lease, not for the cleaner or the stale-job limit.

A queue whose HubSpot calls fail (5xx, timeouts, a refused request) backs off: a pause key with a
TTL makes every release job that runs early (the cleaner or an admission woke it) reschedule
itself to the pause's end, and a failure streak makes the pause grow. Both are advisory like
the wake-ups: a Redis wipe only shortens a pause.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import redis

from throttle_app.config import STALE_JOB_MIN_SECONDS, Settings
from throttle_app.release.job_records import RELEASES_QUEUE, ReleaseJobs
from throttle_app.release.nudges import Nudges

log = logging.getLogger(__name__)

MAINTENANCE_QUEUE = "maintenance"
ALL_QUEUES = (RELEASES_QUEUE, MAINTENANCE_QUEUE)
WAKEUPS_KEY = "throttle:{wakeups}"
WATCH_KEY = "throttle:{wakeups}:watch"  # queue id -> when its running job must renew or end
# Pub/sub channel on which release clocks hear new wake-ups; per Redis database (pub/sub is
# server-wide, so two deployments on one server would otherwise nudge each other's clocks).
NUDGE_CHANNEL = "throttle:{wakeups}:nudge:%d"
PAUSE_KEY = "throttle:{backoff}:pause:%d"  # exists (with a TTL) while the queue backs off
STREAK_KEY = "throttle:{backoff}:streak:%d"  # consecutive failed calls of the queue
STREAK_TTL_SECONDS = 3600  # a streak nobody extended for an hour starts again from one
BUSY_RETRY_MS = 250

# KEYS[1] = the wake-ups sorted set (member: queue id, score: due time in ms).
# KEYS[2] = the watches sorted set (member: queue id, score: when its job must have renewed).
# ARGV[1] = how many due wake-ups (and as many due watches) to pop at most.
# Pops the members of both sets that are due at the Redis server's time and returns
# {number of due wake-ups, due wake-up, ..., due watch, ...} followed by the ms until the next
# pending member of either set (or -1).
PROMOTE_LUA = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local result = {}
local counts = {}
for k = 1, 2 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
  if #due > 0 then
    redis.call('ZREM', KEYS[k], unpack(due))
  end
  counts[k] = #due
  for _, member in ipairs(due) do
    table.insert(result, member)
  end
end
table.insert(result, 1, tostring(counts[1]))
local next_ms = -1
for k = 1, 2 do
  local nxt = redis.call('ZRANGE', KEYS[k], 0, 0, 'WITHSCORES')
  if nxt[2] and (next_ms < 0 or tonumber(nxt[2]) - now_ms < next_ms) then
    next_ms = math.max(0, tonumber(nxt[2]) - now_ms)
  end
end
table.insert(result, string.format('%d', next_ms))
return result
"""

# KEYS[1] = the watches sorted set; ARGV[1] = queue id, ARGV[2] = ms from now.
# Sets the queue's watch to Redis time + ARGV[2] unless a later one is set (two jobs of one
# queue may run at once for a moment: the later promise wins).
WATCH_LUA = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'GT', string.format('%d', now_ms + tonumber(ARGV[2])), ARGV[1])
"""

# KEYS[1] = the wake-ups sorted set.
# ARGV[1] = the nudge channel; ARGV[2] = 'LT' (keep the earlier wake-up) or 'NX' (keep any
# existing wake-up); ARGV[3..] = queue id, delay in ms, [queue id, delay ms ...].
# Adds each wake-up at Redis time + delay and publishes one nudge so sleeping release clocks
# look again (pcall: a Redis user without channel access still adds the wake-up; its clocks
# poll). Returns nothing.
WAKE_LUA = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 3, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[2], string.format('%d', now_ms + tonumber(ARGV[i + 1])), ARGV[i])
end
redis.pcall('PUBLISH', ARGV[1], '1')
"""


class ReleaseSchedule:
    """Wake-ups for release jobs, on one Redis connection."""

    def __init__(
        self,
        connection: redis.Redis,
        job_timeout: int = Settings.job_timeout_seconds,
        stale_after: float = STALE_JOB_MIN_SECONDS,
    ) -> None:
        """`job_timeout`, `stale_after`: the release jobs' (job_records.ReleaseJobs)."""
        self.connection = connection
        self.jobs = ReleaseJobs(connection, job_timeout=job_timeout, stale_after=stale_after)
        self.queue = self.jobs.queue
        self.nudge_channel = NUDGE_CHANNEL % connection.connection_pool.connection_kwargs.get(
            "db", 0
        )
        self._promote = connection.register_script(PROMOTE_LUA)
        self._wake = connection.register_script(WAKE_LUA)
        self._watch = connection.register_script(WATCH_LUA)

    @classmethod
    def from_settings(cls, connection: redis.Redis, settings: Settings) -> ReleaseSchedule:
        """The schedule a process uses: the job timeout and stale-job limit from its settings."""
        return cls(
            connection,
            job_timeout=settings.job_timeout_seconds,
            stale_after=settings.stale_job_seconds,
        )

    def wake(self, queue_ids: Iterable[int], delay_seconds: float = 0.0) -> None:
        """Ask for a release of these queues after `delay_seconds` (earliest request wins)."""
        self._add("LT", {queue_id: delay_seconds for queue_id in queue_ids})

    def wake_each(self, delays: Mapping[int, float]) -> None:
        """`wake` with a delay per queue (the cleaner): queue id -> seconds."""
        self._add("LT", delays)

    def wake_unscheduled(self, queue_ids: Iterable[int]) -> None:
        """New executions arrived: wake these queues now unless a wake-up is already set (a
        queue waiting for its next window keeps its time; a running job reschedules itself)."""
        self._add("NX", dict.fromkeys(queue_ids, 0.0))

    def _add(self, mode: str, delays: Mapping[int, float], chunk: int = 1000) -> None:
        """One script call per `chunk` queues (the cleaner wakes thousands at once)."""
        items = sorted(delays.items())
        for start in range(0, len(items), chunk):
            args: list[str | int] = [self.nudge_channel, mode]
            for queue_id, delay_seconds in items[start : start + chunk]:
                args += [int(queue_id), max(0, int(delay_seconds * 1000))]
            self._wake(keys=[WAKEUPS_KEY], args=args)

    def watch(self, queue_id: int, seconds: float) -> None:
        """The queue's running job renews its claim or ends within `seconds` (its lease): if it
        has not when they are up, its worker is gone and the release clock replaces the job."""
        self._watch(keys=[WATCH_KEY], args=[int(queue_id), max(1, int(seconds * 1000) + 1)])

    def unwatch(self, queue_id: int) -> None:
        """The queue's job ended its run (it has scheduled its next one). Two jobs of one queue
        running at once (a replaced job still alive) share the watch: the first to end removes
        it, and the cleaner covers the other if it then dies."""
        self.connection.zrem(WATCH_KEY, int(queue_id))

    def pause(self, queue_id: int, seconds: float) -> None:
        """Hold the queue's release jobs back for `seconds`. A longer pause already set is kept
        (read, then set: two pauses set at the same moment may race; pauses are advisory)."""
        key = PAUSE_KEY % queue_id
        ms = max(1, int(seconds * 1000))
        if (self.connection.pttl(key) or 0) < ms:
            self.connection.set(key, "1", px=ms)

    def paused_for(self, queue_id: int) -> float:
        """Seconds left of the queue's pause (0.0 when it is not backing off)."""
        ms = self.connection.pttl(PAUSE_KEY % queue_id)
        return ms / 1000 if ms and ms > 0 else 0.0

    def failure_streak(self, queue_id: int) -> int:
        """Count one more failed call of the queue; return how many in a row."""
        key = STREAK_KEY % queue_id
        pipe = self.connection.pipeline()
        pipe.incr(key)
        pipe.expire(key, STREAK_TTL_SECONDS)
        return int(pipe.execute()[0])

    def succeeded(self, queue_id: int) -> None:
        """A call went through: the next failure starts a new streak."""
        self.connection.delete(STREAK_KEY % queue_id)

    def listen(self) -> Nudges:
        """A release clock's subscription to new wake-ups, confirmed by the server (subscribe,
        then promote: a wake-up added in between is heard). Raises redis.NoPermissionError
        when the Redis user may not subscribe to the channel."""
        return Nudges(self.connection, self.nudge_channel)

    def promote_due(self, limit: int = 100) -> float | None:
        """Enqueue the release jobs that are due, replacing the running job of a queue whose
        watch fell due; return seconds until the next wake-up or watch."""
        count, *popped, next_ms = self._promote(keys=[WAKEUPS_KEY, WATCH_KEY], args=[limit])
        due = [int(queue_id) for queue_id in popped[: int(count)]]
        dead = [int(queue_id) for queue_id in popped[int(count) :]]
        busy = [queue_id for queue_id in dead if not self._promote_one(queue_id, replace=True)]
        busy += [q for q in due if q not in dead and not self._promote_one(q)]
        if busy:
            self.wake(busy, BUSY_RETRY_MS / 1000)
        if len(due) >= limit or len(dead) >= limit:
            return 0.0
        next_ms = int(next_ms)
        return None if next_ms < 0 else max(0.0, next_ms / 1000)

    def _promote_one(self, queue_id: int, replace: bool = False) -> bool:
        """Enqueue the queue's release job (False: it is still queued or running), where a bad
        job record counts as busy (retried shortly): the wake-up was popped already, and
        raising would lose it and every other one popped with it."""
        try:
            return self.jobs.enqueue(queue_id, replace)
        except redis.RedisError:
            raise  # Redis is away: the wake-up cannot be put back either; the cleaner restores it
        except Exception:
            log.exception("release job of queue %s could not be enqueued; retrying", queue_id)
            return False
