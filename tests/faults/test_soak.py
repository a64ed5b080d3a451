"""The soak: a steady webhook load while web and worker processes are SIGKILLed in turn and
started again (as a supervisor would), then a drain; THROTTLE_SOAK_SECONDS of load (default
120, `make soak` runs 600).

At the end:
- every execution HubSpot delivered was acknowledged (HubSpot redelivers what was not), and
  every answer was a 200, a 503 with Retry-After, or no answer while the web was down;
- every acknowledged execution completed at the fake HubSpot, or is reported (failed or expired
  with its reason in PostgreSQL);
- exactly once, except the batches in flight when a worker was killed (at-least-once delivery:
  a callback completed twice was first completed just before a worker kill);
- no span of T holds more than N completions of a queue;
- no process died unless the soak killed it;
- the resident memory of every process, sampled every few seconds and printed, grows less
  than 50% from the end of its warm-up to the end (for processes observed long enough).

Timings come from the stack's settings (lease, stale-job limit, cleaner interval), so a
different lease handling changes the schedule, not the assertions.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import pytest
import redis

from tests.conftest import TEST_DATABASE_URL
from tests.faults.invariants import acknowledged, busiest_span, by_prefix, rows_for
from tests.faults.webhook_load import LoadPlan, LoadProcess, QueueLoad
from tests.release.window_checks import RECEIPT_JITTER
from tests.support.processes import Periodic, Stack, Supervisor, group_rss_kb
from throttle_app.release.schedule import RELEASES_QUEUE

pytestmark = pytest.mark.slow

SOAK_SECONDS = float(os.environ.get("THROTTLE_SOAK_SECONDS", "120"))
QUEUES = (
    QueueLoad("sa", workflow_id=601, max_throughput=20, seconds=1, per_second=6.0),
    QueueLoad("sb", workflow_id=602, max_throughput=6, seconds=2, per_second=1.5),
)
MIN_KILL_EVERY_SECONDS = 15.0
FIRST_KILL_SECONDS = 15.0
KILL_ROUNDS = 2  # each role is killed at least this often; longer soaks space the kills out
RSS_EVERY_SECONDS = 5.0
WARM_UP_SECONDS = 20.0  # a process's memory before this is its start-up, not its growth
JUDGED_AFTER_SECONDS = 40.0  # growth is judged on processes observed this long after warm-up
MAX_RSS_GROWTH = 0.5


@dataclass(frozen=True)
class RssSample:
    at: float
    role: str
    pid: int
    name: str
    kb: int


class RssSampler(Periodic):
    """Samples the resident memory of every process of every role, every `every` seconds."""

    def __init__(self, stack: Stack, every: float) -> None:
        super().__init__(every, "rss")
        self.stack = stack
        self.samples: list[RssSample] = []

    def tick(self) -> None:
        now = time.time()
        for role, process in list(self.stack.processes().items()):
            for pid, (name, kb) in group_rss_kb(process.pid).items():
                self.samples.append(RssSample(now, role, pid, name, kb))

    def report(self) -> list[dict]:
        """Per process: its memory after warm-up, at its peak and at its last sample."""
        by_pid: dict[int, list[RssSample]] = defaultdict(list)
        for sample in self.samples:
            by_pid[sample.pid].append(sample)
        rows = []
        for pid, samples in sorted(by_pid.items(), key=lambda kv: (kv[1][0].role, kv[0])):
            born = samples[0].at
            warm = [s for s in samples if s.at >= born + WARM_UP_SECONDS]
            if not warm:
                continue
            base, last = warm[0].kb, warm[-1].kb
            rows.append(
                {
                    "role": samples[0].role,
                    "pid": pid,
                    "process": samples[0].name[:48],
                    "observed_s": round(warm[-1].at - warm[0].at),
                    "after_warm_up_mb": round(base / 1024, 1),
                    "peak_mb": round(max(s.kb for s in warm) / 1024, 1),
                    "last_mb": round(last / 1024, 1),
                    "growth": round((last - base) / base, 3) if base else 0.0,
                    "series_mb": [round(s.kb / 1024, 1) for s in warm],
                }
            )
        return rows


def kill_plan(duration: float, resume_bound: float) -> list[tuple[float, str]]:
    """(seconds after the load started, role): worker-0, web, worker-1, web, ... spread evenly
    over KILL_ROUNDS rounds but never closer than MIN_KILL_EVERY_SECONDS (a short soak gets
    fewer), the last one early enough for its queue to resume and catch up before the load
    ends. Spacing the kills out in a long soak leaves processes that live long enough for their
    memory to say something."""
    last = duration - resume_bound - 10.0
    roles = ["worker-0", "web", "worker-1", "web"]
    every = max(
        MIN_KILL_EVERY_SECONDS, (last - FIRST_KILL_SECONDS) / (KILL_ROUNDS * len(roles) - 1)
    )
    plan, at, turn = [], FIRST_KILL_SECONDS, 0
    while at <= last:
        plan.append((at, roles[turn % len(roles)]))
        at += every
        turn += 1
    return plan


def test_soak(installed, fake, tmp_path):
    stack = Stack(fake, tmp_path, workers=2)
    settings = stack.settings
    # How long a killed worker's queue may take to resume: its job is replaced once its
    # heartbeat is stale, and its rows come back when their lease ends and the cleaner runs.
    resume_bound = (
        max(settings.lease_seconds, settings.stale_job_seconds)
        + settings.cleaner_interval_seconds
        + 5.0
    )
    kills = kill_plan(SOAK_SECONDS, resume_bound)
    assert kills, f"THROTTLE_SOAK_SECONDS={SOAK_SECONDS:g} is too short to kill anything"
    killed: list[tuple[float, str]] = []
    load = None
    try:
        with Supervisor(stack) as supervisor, RssSampler(stack, RSS_EVERY_SECONDS) as rss:
            start_at = time.time() + 3.0
            plan = LoadPlan(
                stack.base, QUEUES, SOAK_SECONDS, start_at, redeliver=True, settle=resume_bound
            )
            load = LoadProcess(plan).start()
            for offset, role in kills:
                time.sleep(max(0.0, start_at + offset - time.time()))
                supervisor.kill(role)
                killed.append((time.time(), role))
            deliveries = load.result()
            ids = acknowledged(deliveries)
            drained = _wait_until_done(fake, ids, resume_bound + 60)
            time.sleep(1.0)  # a straggling duplicate would show now
            lost_jobs = lost_release_jobs(redis.Redis.from_url(stack.redis_url))
    finally:
        if load is not None:
            load.close()
        stack.stop()

    table = rss.report()
    print_rss(table)
    judged = [row for row in table if row["observed_s"] >= JUDGED_AFTER_SECONDS]
    assert judged, "no process lived long enough to judge its memory"
    grown = [row for row in judged if row["growth"] >= MAX_RSS_GROWTH]
    assert grown == [], f"memory grew by half or more: {grown}"
    figures: dict[str, object] = {
        "soak_seconds": SOAK_SECONDS,
        "resume_bound_s": resume_bound,
        "kills": [role for _, role in killed],
        "drained_after_load_s": round(drained, 1),
    }
    # every execution acknowledged; every answer a 200, a 503 + Retry-After, or none
    planned = {d.callback_id for d in deliveries}
    assert ids == planned, f"{len(planned - ids)} executions were never acknowledged"
    statuses = Counter(d.status for d in deliveries)
    figures["answers"] = dict(statuses)
    assert set(statuses) <= {200, 503, 0}, statuses
    assert all(d.retry_after for d in deliveries if d.status == 503)
    unanswered = [d for d in deliveries if d.status == 0]
    web_kills = [at for at, role in killed if role == "web"]
    assert all(any(k - 10 <= d.started <= k + 30 for k in web_kills) for d in unanswered), (
        "a webhook got no answer while the web was up"
    )
    # no process died by itself
    died = [role for at, role, _ in supervisor.restarts if not _was_killed(role, at, killed)]
    assert died == [], f"processes died without being killed: {died}"

    # completed or reported; exactly once but for the batches in flight at a worker kill
    completions = fake.completions()
    counts = Counter(c["callback_id"] for c in completions)
    missing = ids - set(counts)
    rows = rows_for(TEST_DATABASE_URL, missing)
    unreported = [
        cid
        for cid in missing
        if cid not in rows or rows[cid][0] not in ("failed", "expired") or not rows[cid][1]
    ]
    if unreported and lost_jobs:
        print("soak figures:", figures)
        pytest.xfail(
            f"{len(unreported)} executions stalled behind release jobs a killed worker took off"
            f" the RQ queue ({lost_jobs}): the known bug of test_worker_kill.py"
        )
    assert unreported == [], f"{len(unreported)} neither completed nor reported"
    first_completion = {}
    for c in completions:
        first_completion.setdefault(c["callback_id"], c["time"])
    worker_kills = [at for at, role in killed if role.startswith("worker")]
    in_flight = settings.call_budget_seconds + 1.0
    twice = [cid for cid, n in counts.items() if n > 1]
    not_in_flight = [
        cid
        for cid in twice
        if not any(k - in_flight <= first_completion[cid] <= k + 1.0 for k in worker_kills)
    ]
    assert not_in_flight == [], f"completed twice, not in flight at a kill: {not_in_flight[:5]}"
    figures["executions"] = len(ids)
    figures["completed"] = len(set(counts))
    figures["reported_failed_or_expired"] = len(missing)
    figures["completed_twice_at_a_worker_kill"] = len(twice)

    # no span of T holds more than N
    decided = by_prefix((c["callback_id"], c["time"]) for c in completions)
    for queue in QUEUES:
        busiest, _ = busiest_span(decided[queue.prefix], queue.seconds - RECEIPT_JITTER)
        assert busiest <= queue.max_throughput, f"{queue.prefix}: {busiest} in {queue.seconds}s"
        figures[queue.prefix] = f"busiest {busiest} per {queue.seconds}s (N={queue.max_throughput})"

    print("soak figures:", figures)


def print_rss(table: list[dict]) -> None:
    print(
        f"RSS per process (MB, every {RSS_EVERY_SECONDS:g}s after a {WARM_UP_SECONDS:g}s warm-up):"
    )
    for row in table:
        print(
            f"  {row['role']:<10} {row['pid']:>7} {row['process']:<48}"
            f" {row['observed_s']:>4}s {row['after_warm_up_mb']:>7} -> {row['last_mb']:>7}"
            f" (peak {row['peak_mb']}, {row['growth']:+.1%}) {row['series_mb']}"
        )


def lost_release_jobs(connection: redis.Redis) -> list[str]:
    """Release jobs whose record says QUEUED while no RQ queue list holds them: a worker took
    them (BLPOP) and was killed before it started them (see test_worker_kill.py)."""
    listed = {job_id.decode() for job_id in connection.lrange(f"rq:queue:{RELEASES_QUEUE}", 0, -1)}
    lost = []
    for key in connection.scan_iter("rq:job:release-*"):
        job_id = key.decode().removeprefix("rq:job:")
        if connection.hget(key, "status") == b"queued" and job_id not in listed:
            lost.append(job_id)
    return sorted(lost)


def _was_killed(role: str, restarted_at: float, killed: list[tuple[float, str]]) -> bool:
    """The restart followed a kill of that role by the soak (within the supervisor's delay)."""
    return any(r == role and 0 <= restarted_at - at <= 10.0 for at, r in killed)


def _wait_until_done(fake, ids: set[str], timeout: float) -> float:
    """Seconds until every id is completed at the fake or finished in PostgreSQL."""
    started = time.monotonic()
    while True:
        completed = {c["callback_id"] for c in fake.completions()}
        rest = ids - completed
        if not rest:
            break
        rows = rows_for(TEST_DATABASE_URL, rest)
        if len(rows) == len(rest) and all(s in ("failed", "expired") for s, _ in rows.values()):
            break
        if time.monotonic() - started > timeout:
            break  # the assertions say what is missing
        time.sleep(0.5)
    return time.monotonic() - started
