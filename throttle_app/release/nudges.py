"""How release clocks hear new wake-ups: a pub/sub subscription whose wait is timed here.

ReleaseSchedule.wake publishes a nudge on the schedule's channel with every wake-up it adds;
a sleeping release clock (clock.py) wakes on it instead of at the end of its sleep.
"""

from __future__ import annotations

import time

import redis


class Nudges:
    """New wake-ups, heard on a pub/sub channel; the wait is timed in this process.

    A blocking Redis command (BLPOP) would be simpler, but the server checks blocking timeouts
    only on its cron tick (`hz`, 10 by default): a 0.2 s BLPOP returned after 0.30 s here, so
    a clock sleeping until the next window woke up to 100 ms late. A nudge published while this
    process is busy promoting waits in its socket and ends the next wait at once.
    """

    def __init__(self, connection: redis.Redis, channel: str, confirm_seconds: float = 5.0) -> None:
        self._pubsub = connection.pubsub()
        try:
            self._pubsub.subscribe(channel)
            # SUBSCRIBE goes out on a connection of its own and nothing waits for its reply;
            # until the server confirms it, a wake-up published now would be missed.
            deadline = time.monotonic() + confirm_seconds
            while (message := self._next(deadline)) is None or message["type"] != "subscribe":
                if time.monotonic() >= deadline:
                    raise redis.TimeoutError(f"no confirmation of the subscription to {channel}")
        except BaseException:
            self._pubsub.close()
            raise

    def wait(self, timeout: float) -> None:
        """Return when a wake-up is added or after `timeout` seconds; a burst of nudges that
        already arrived counts as one."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while (message := self._next(deadline)) is not None:
            if message["type"] == "message":
                while self._pubsub.get_message(timeout=0.0) is not None:
                    pass
                return

    def _next(self, deadline: float) -> dict | None:
        return self._pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self._pubsub.close()
