"""Per-portal token bucket in Redis, shared by every process that calls HubSpot.

Every outbound HubSpot call for a portal first takes a token here (design invariant 4). The bucket
is a GCRA (generic cell rate algorithm): one stored "theoretical arrival time" (TAT) per portal,
updated atomically by a Lua script that reads the Redis server clock, so workers with skewed clocks
agree. With capacity C and refill r tokens/second, any interval of length t sees at most
C + r*t tokens granted (the emission interval is rounded *up* to whole microseconds, so rounding
only ever makes the bucket stricter). The settings' defaults (C = 10, r = 9.5/s) grant at most 105
in any 10 s, under HubSpot's 110 per 10 s per installed account (docs/design.md).

A 429 from HubSpot calls :meth:`TokenBucket.block`, which empties the bucket for every process until
the block ends; the bucket then refills from empty. HubSpot's rate-limit answer headers tighten
the bucket the same way (:meth:`TokenBucket.block`, :meth:`TokenBucket.cap`); nothing ever
loosens it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import redis

# GCRA bucket script. Timestamps are integer microseconds of the Redis server clock (TIME).
#   KEYS[1]  the bucket key; its value is the TAT as a decimal integer string (microseconds).
#            A missing key means a full bucket; the key expires as soon as that is true again.
#   ARGV[1]  emission interval T: whole microseconds per token (>= 1), i.e. ceil(1e6 / r).
#   ARGV[2]  capacity C (>= 1): the burst; a token is granted while TAT - now <= (C - 1) * T.
#   ARGV[3]  mode: "take" (consume one token if one is available), "peek" (read only),
#            "block" (empty the bucket until now + ARGV[4]; never moves an existing TAT back), or
#            "cap" (leave at most ARGV[4] tokens available now; never moves an existing TAT back).
#   ARGV[4]  "block": duration in whole microseconds (>= 0); "cap": tokens (1 .. C - 1).
# Returns an integer number of microseconds to wait until a token is available:
#   0 means "take": a token was consumed / "peek": a token is available now.
#   > 0 means nothing was consumed; for "block" it is the wait until the first token after it.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local mode = ARGV[3]
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local slack = (capacity - 1) * interval
if mode == 'take' then
  if tat - now > slack then
    return tat - slack - now
  end
  tat = tat + interval
elseif mode == 'block' then
  local blocked = now + tonumber(ARGV[4]) + slack
  if blocked > tat then
    tat = blocked
  end
elseif mode == 'cap' then
  local capped = now + (capacity - tonumber(ARGV[4])) * interval
  if capped > tat then
    tat = capped
  end
else
  return math.max(tat - slack - now, 0)
end
local ttl_ms = math.ceil((tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', string.format('%d', ttl_ms))
if mode == 'take' then
  return 0
end
return math.max(tat - slack - now, 0)
"""

_US = 1_000_000


class TokenBucket:
    """A GCRA token bucket per HubSpot portal, atomic across processes via one Redis key each.

    ``capacity`` is the burst C and ``refill_per_second`` the rate r; at most C + r*t tokens are
    granted in any interval of length t. Keys are ``<key_prefix>:{<portal_id>}`` (hash-tagged, so
    the script runs on Redis Cluster) and expire once the bucket is full again.
    """

    def __init__(
        self,
        client: redis.Redis,
        capacity: int,
        refill_per_second: float,
        key_prefix: str = "throttle:bucket",
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        if (
            isinstance(refill_per_second, bool)
            or not isinstance(refill_per_second, int | float)
            or not math.isfinite(refill_per_second)
            or refill_per_second <= 0
        ):
            raise ValueError(
                f"refill_per_second must be a finite number > 0, got {refill_per_second!r}"
            )
        if not key_prefix:
            raise ValueError("key_prefix must not be empty")
        self.capacity = capacity
        self.refill_per_second = float(refill_per_second)
        self.key_prefix = key_prefix
        # Rounded up: a slightly longer interval can only grant fewer tokens, never more.
        self.interval_us = max(1, math.ceil(_US / self.refill_per_second))
        # register_script computes the SHA once and retries EVALSHA after NOSCRIPT by itself.
        self._script = client.register_script(GCRA_LUA)

    def key(self, portal_id: int) -> str:
        """The Redis key of a portal's bucket, e.g. ``throttle:bucket:{12345}``."""
        return f"{self.key_prefix}:{{{int(portal_id)}}}"

    def _run(self, portal_id: int, mode: str, block_us: int = 0) -> float:
        args = [self.interval_us, self.capacity, mode, block_us]
        wait_us = self._script(keys=[self.key(portal_id)], args=args)
        return int(wait_us) / _US

    def take(self, portal_id: int) -> float:
        """Take one token: 0.0 when taken, else the seconds to wait (nothing is consumed)."""
        return self._run(portal_id, "take")

    def wait_time(self, portal_id: int) -> float:
        """Seconds until a token is available (0.0 if one is available now); consumes nothing."""
        return self._run(portal_id, "peek")

    def block(self, portal_id: int, seconds: float) -> None:
        """Empty the bucket for every process until now + ``seconds`` (after HubSpot's 429).

        The first token is available when the block ends, then the bucket refills from empty.
        A shorter block never shortens an existing longer one. Clamping ``Retry-After`` is the
        caller's job; ``seconds`` must be finite and >= 0.
        """
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"block seconds must be finite and >= 0, got {seconds!r}")
        self._run(portal_id, "block", math.ceil(seconds * _US))

    def cap(self, portal_id: int, tokens: int) -> None:
        """Leave at most ``tokens`` tokens available now (HubSpot says only that many calls are
        left in its window); the bucket refills from there. A bucket holding fewer is left as it
        is, and ``tokens`` >= capacity changes nothing; use :meth:`block` for none."""
        if tokens < 1:
            raise ValueError(f"cap tokens must be >= 1, got {tokens!r}")
        if tokens < self.capacity:
            self._run(portal_id, "cap", int(tokens))

    def acquire(
        self,
        portal_id: int,
        max_wait: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> bool:
        """Take a token, sleeping the returned wait while the total stays within ``max_wait``.

        Returns True once a token is taken, or False (nothing consumed) as soon as the next wait
        would take the total time slept past ``max_wait``; the caller then reschedules its work.
        """
        slept = 0.0
        while True:
            wait = self.take(portal_id)
            if wait <= 0:
                return True
            if slept + wait > max_wait:
                return False
            sleep(wait)
            slept += wait
