"""Redis really restarted (SHUTDOWN NOSAVE, then started again on the same port, every key
lost) while two queues release through the real web, workers and scheduler.

Redis holds nothing durable: wake-ups, RQ jobs, the token buckets and back-off keys are all
lost. What the design promises, and what is checked:
- nothing over-released: no span of T holds more than N sends of a queue, counted on the wire
  in front of the fake HubSpot (every attempt) and in the fake's completions;
- wake-ups and buckets are rebuilt: after the restart, wake-ups are added again (the cleaner
  restores them from PostgreSQL) and the portal's bucket is taken from again (seen through
  keyspace notifications), and releases resume;
- no execution lost: every one completes at HubSpot, and none twice (nothing was in doubt: a
  restart of Redis interrupts no HubSpot call);
- the processes come back: a process that exits is started again by a supervisor (as
  Kubernetes would), and the figures say which ones needed it.

Separately, `test_processes_ride_out_a_redis_restart` asks for more than a supervisor: that no
process exits at all when Redis goes away for two seconds (workers/outage.py).
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
import redis

from tests.conftest import TEST_DATABASE_URL, service_env
from tests.faults.hubspot_wire import WireLog
from tests.faults.invariants import acknowledged, busiest_span, by_prefix, rows_for
from tests.faults.lease_watch import LeaseWatch
from tests.faults.webhook_load import LoadPlan, LoadProcess, QueueLoad
from tests.support.processes import (
    Periodic,
    PrivateRedis,
    Stack,
    Supervisor,
    kill_group,
    private_redis_server,
    start_role,
)
from tests.support.tcp_proxy import TcpProxy
from throttle_app.release.schedule import WAKEUPS_KEY

pytestmark = pytest.mark.slow

QUEUES = (
    QueueLoad("ra", workflow_id=501, max_throughput=20, seconds=1, per_second=150, count=240),
    QueueLoad("rb", workflow_id=502, max_throughput=6, seconds=2, per_second=40, count=48),
)
BUCKET_PREFIX = "throttle:bucket:"


class KeyEvents(Periodic):
    """Keyspace notifications of a Redis server, across its restarts: (time, key, event)."""

    def __init__(self, url: str) -> None:
        super().__init__(0.0, "key-events")
        self.url = url
        self.events: list[tuple[float, str, str]] = []
        self._pubsub = None

    def tick(self) -> None:
        try:
            if self._pubsub is None:
                self._pubsub = redis.Redis.from_url(self.url, socket_timeout=2).pubsub()
                self._pubsub.psubscribe("__keyspace@0__:throttle:*")
            message = self._pubsub.get_message(timeout=0.2)
        except redis.RedisError:
            self._pubsub = None  # the server is restarting: subscribe again
            time.sleep(0.05)
            return
        if message and message["type"] == "pmessage":
            key = message["channel"].decode().split(":", 1)[1]
            self.events.append((time.time(), key, message["data"].decode()))

    def first_after(self, at: float, key_prefix: str, event: str) -> float | None:
        """When `event` first happened to a key starting with `key_prefix` at or after `at`."""
        return min(
            (
                t
                for t, key, e in self.events
                if t >= at and key.startswith(key_prefix) and e == event
            ),
            default=None,
        )


def test_redis_restarted_mid_release(installed, fake, tmp_path):
    wire = WireLog()
    with (
        private_redis_server(tmp_path, "--notify-keyspace-events", "KA") as server,
        TcpProxy(fake.port, on_data=wire) as proxy,
        KeyEvents(server.url) as keys,
    ):
        stack = Stack(
            fake,
            tmp_path,
            workers=2,
            redis_url=server.url,
            HUBSPOT_API_BASE=f"http://127.0.0.1:{proxy.port}",
            HUBSPOT_APP_BASE=f"http://127.0.0.1:{proxy.port}",
        )
        settings = stack.settings
        watch = LeaseWatch.for_settings(TEST_DATABASE_URL, settings)
        try:
            with watch, Supervisor(stack) as supervisor:
                plan = LoadPlan(
                    stack.base, QUEUES, 1.6, time.time() + 2.5, redeliver=True, settle=5
                )
                ids = acknowledged(LoadProcess(plan).start().result())
                assert len(ids) == sum(q.count for q in QUEUES)
                _wait_for(lambda: len(fake.completions()) >= 60, 30, "releases to start")
                before = len(fake.completions())
                restarted_at = _restart(server)
                done = _wait_for(
                    lambda: ids <= {c["callback_id"] for c in fake.completions()},
                    60 + settings.lease_seconds + settings.stale_job_seconds,
                    "every execution to complete",
                )
                time.sleep(1.0)  # a straggling duplicate would show now
        finally:
            stack.stop()
    assert before < len(ids) * 0.6, "the restart came too late to be mid-release"
    assert watch.stuck == [], watch.stuck[:5]

    completions = fake.completions()
    counts = Counter(c["callback_id"] for c in completions)
    assert set(counts) == ids, "lost or unknown executions"
    assert [cid for cid, n in counts.items() if n > 1] == [], "completed twice"
    assert all(state == "completed" for state, _ in rows_for(TEST_DATABASE_URL, ids).values())

    wake_rebuilt = keys.first_after(restarted_at, WAKEUPS_KEY, "zadd")
    bucket_rebuilt = keys.first_after(restarted_at, BUCKET_PREFIX, "set")
    assert wake_rebuilt is not None, "no wake-up was added after the restart"
    assert bucket_rebuilt is not None, "no bucket was taken from after the restart"
    after = [c for c in completions if c["time"] > restarted_at]
    assert after, "nothing was released after the restart"

    sends = wire.send_times()
    decided = by_prefix((c["callback_id"], c["time"]) for c in completions)
    figures: dict[str, object] = {
        "completed_before_restart": before,
        "wakeup_rebuilt_after_s": round(wake_rebuilt - restarted_at, 2),
        "bucket_rebuilt_after_s": round(bucket_rebuilt - restarted_at, 2),
        "first_completion_after_s": round(min(c["time"] for c in after) - restarted_at, 2),
        "all_done_after_restart_s": round(done, 1),
        "restarted_by_the_supervisor": [role for _, role, _ in supervisor.restarts],
    }
    for queue in QUEUES:
        n, t = queue.max_throughput, queue.seconds
        busiest, at = busiest_span(sends[queue.prefix], t)
        assert busiest <= n, f"{queue.prefix}: {busiest} sends started within {t}s at {at}"
        assert busiest_span(decided[queue.prefix], t)[0] <= n
        figures[queue.prefix] = {"N/T": f"{n}/{t}s", "busiest_sends": busiest}
    print("redis restart figures:", figures)


def _restart(server: PrivateRedis) -> float:
    """SHUTDOWN NOSAVE, one second down, start again; returns when it was back."""
    server.restart(down_seconds=1.0)
    return time.time()


def _wait_for(condition, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)
    return time.monotonic() - started


def test_processes_ride_out_a_redis_restart(migrated_database, tmp_path):
    with private_redis_server(tmp_path) as server:
        env = service_env(REDIS_URL=server.url, THROTTLE_LOG_LEVEL="WARNING")
        roles = {
            role: start_role(role, env, log_path=tmp_path / f"{role}.log")
            for role in ("scheduler", "worker")
        }
        try:
            time.sleep(4.0)  # both started and in their loops
            assert [role for role, p in roles.items() if p.poll() is not None] == []
            server.restart(down_seconds=2.0)
            time.sleep(4.0)
            exited = [role for role, p in roles.items() if p.poll() is not None]
            # and they work again: the empty Redis gets a worker and the periodic jobs back
            client = redis.Redis.from_url(server.url)
            _wait_for(lambda: client.scard("rq:workers") > 0, 20, "a worker registered")
            _wait_for(lambda: client.zcard("rq:scheduler:scheduled_jobs") > 0, 20, "periodic jobs")
            stopped = {role: _stop(process) for role, process in roles.items()}
        finally:
            for process in roles.values():
                kill_group(process, signal.SIGTERM)
    assert exited == [], f"exited when Redis restarted: {exited}"
    assert stopped == {"scheduler": 0, "worker": 0}  # SIGTERM still ends them cleanly


def _stop(process) -> int | None:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(30)
    except Exception:
        return None
