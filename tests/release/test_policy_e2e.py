"""Release policies end to end: real gunicorn web, RQ workers, the scheduler, PostgreSQL, Redis and
the fake HubSpot. One run carries several queues of one portal at once, each with a policy, and
the fake's completion times (the wall clock, as the database's) show what each one did:

- a window a minute ahead in Asia/Kolkata: nothing before it opens, then N per T;
- a day not listed (today, in a zone where today is not about to end): nothing at all;
- startAt as ISO 8601 with an offset and as epoch milliseconds: nothing before it;
- priority: the higher ones go in the first windows;
- two workflows naming one queueName: one rate between them;
- spread: completions T/N apart, at N per T.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.release.test_e2e import _post_all, wait_for_completions
from tests.release.window_checks import max_in_window, sustained_rate
from tests.support.hubspot_requests import execution_payload
from tests.support.processes import Stack
from tests.support.release_helpers import PORTAL

pytestmark = pytest.mark.slow

WINDOW_ZONE = "Asia/Kolkata"
SHARED_WORKFLOW = 305
DAY_ZONES = ("Pacific/Kiritimati", "Asia/Tokyo", "Europe/Berlin", "America/Los_Angeles")
DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
WINDOW_LEAD = 12  # s from the stack's start to the window (a local minute): posting takes ~2 s
START_LEAD = 8  # s from the stack's start to startAt


def bodies(prefix: str, count: int, workflow_id: int, rate: tuple[int, int], **inputs) -> list:
    """Signed-ready webhook bodies of one queue; `inputs` may be a function of n."""
    out = []
    for n in range(count):
        payload = execution_payload(
            callback_id=f"{prefix}-{n}",
            portal_id=PORTAL,
            workflow_id=workflow_id,
            max_throughput=str(rate[0]),
            time_value=str(rate[1]),
            period="seconds",
        )
        payload["inputFields"].update(
            {key: value(n) if callable(value) else value for key, value in inputs.items()}
        )
        out.append(json.dumps(payload).encode())
    return out


def post(base: str, jobs: list[bytes]) -> None:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as sender:
        statuses = sender.submit(_post_all, base, jobs).result(timeout=300)
    assert statuses == [200] * len(jobs)


def times_of(completions: list[dict], prefix: str) -> list[float]:
    first: dict[str, float] = {}
    for record in completions:
        if record["callback_id"].startswith(prefix + "-"):
            first.setdefault(record["callback_id"], record["time"])
    return sorted(first.values())


def zone_far_from_midnight(now: datetime) -> tuple[str, str]:
    """A zone whose local day has more than 15 minutes left and began over 15 minutes ago,
    and that day's name."""
    for name in DAY_ZONES:
        local = now.astimezone(ZoneInfo(name))
        minutes = local.hour * 60 + local.minute
        if 15 < minutes < 24 * 60 - 15:
            return name, DAYS[local.isoweekday() - 1]
    raise AssertionError("every candidate zone is near midnight")  # they span 22 hours


def test_policies_end_to_end(installed, fake, tmp_path):
    stack = Stack(fake, tmp_path, workers=2)  # up first: the times below count from its start
    try:
        completions, window_opens, start_at = run_policies(stack, fake)
    finally:
        stack.stop()
    check_policies(completions, window_opens, start_at)


def run_policies(stack: Stack, fake) -> tuple[list[dict], float, datetime]:
    """Post every policy's webhooks and wait for what must complete; the stack is running."""
    now = datetime.now(UTC)
    kolkata = now.astimezone(ZoneInfo(WINDOW_ZONE))
    # The next local minute at least WINDOW_LEAD s away: the webhooks are in before it opens.
    opens_local = (kolkata + timedelta(seconds=WINDOW_LEAD + 60)).replace(second=0, microsecond=0)
    window_opens = opens_local.timestamp()
    closes_local = opens_local + timedelta(minutes=5)
    day_zone, today = zone_far_from_midnight(now)
    start_at = now + timedelta(seconds=START_LEAD)
    iso_start = start_at.astimezone(ZoneInfo("Asia/Kolkata")).isoformat()
    jobs = [
        *bodies(
            "win",
            30,
            301,
            (10, 1),
            windowStart=f"{opens_local:%H:%M}",
            windowEnd=f"{closes_local:%H:%M}",
            timeZone=WINDOW_ZONE,
        ),
        *bodies(
            "day",
            20,
            302,
            (10, 1),
            releaseDays=";".join(day for day in DAYS if day != today),
            timeZone=day_zone,
        ),
        *bodies(
            "iso",
            10,
            303,
            (5, 1),
            startAt=iso_start,
        ),
        *bodies(
            "prio",
            15,
            304,
            (5, 1),
            startAt=str(int(start_at.timestamp() * 1000)),
            priority=lambda n: str((n % 3) * 4),
        ),
        # a backlog from the start (startAt), so the rates are the engine's, not the arrivals'
        *bodies("shared", 80, SHARED_WORKFLOW, (10, 1), queueName="e2e shared", startAt=iso_start),
        *bodies("spread", 20, 307, (5, 1), mode="spread", startAt=iso_start),
    ]
    # half the shared queue's executions come from another workflow naming the same queue
    for index, body in enumerate(jobs):
        payload = json.loads(body)
        if payload["callbackId"].startswith("shared-") and index % 2:
            payload["context"]["workflowId"] = SHARED_WORKFLOW + 1
            jobs[index] = json.dumps(payload).encode()
    expected = {json.loads(body)["callbackId"] for body in jobs}
    expected -= {c for c in expected if c.startswith("day-")}
    post(stack.base, jobs)
    assert time.time() < start_at.timestamp(), "the webhooks must all be in before startAt"
    wait_for_completions(fake, expected, timeout=window_opens - time.time() + 60)
    time.sleep(2)
    return fake.completions(), window_opens, start_at


def check_policies(completions: list[dict], window_opens: float, start_at: datetime) -> None:
    # every other one completed (wait_for_completions); a day not listed: nothing at all
    assert not any(c["callback_id"].startswith("day-") for c in completions)
    counts: dict[str, int] = {}
    for record in completions:
        counts[record["callback_id"]] = counts.get(record["callback_id"], 0) + 1
    assert set(counts.values()) == {1}  # exactly once

    window = times_of(completions, "win")
    assert min(window) >= window_opens, (min(window), window_opens)  # nothing before it opens
    assert max_in_window(window, 1.0) <= 10
    assert max(window) - window_opens < 4.0  # 30 at 10 per second once open

    for prefix in ("iso", "prio"):
        assert min(times_of(completions, prefix)) >= start_at.timestamp(), prefix
        assert max_in_window(times_of(completions, prefix), 1.0) <= 5

    by_priority: dict[int, list[float]] = {}
    for record in completions:
        if record["callback_id"].startswith("prio-"):
            n = int(record["callback_id"].split("-")[1])
            by_priority.setdefault((n % 3) * 4, []).append(record["time"])
    assert max(by_priority[8]) < min(by_priority[4]) <= max(by_priority[4]) < min(by_priority[0])

    shared = times_of(completions, "shared")
    assert max_in_window(shared, 1.0) <= 10  # one rate for both workflows

    spread = times_of(completions, "spread")
    gaps = [later - earlier for earlier, later in itertools.pairwise(spread)]
    shared_rate = sustained_rate(completions, "shared-", 10)
    spread_rate = sustained_rate(completions, "spread-", 1)
    done = max(window) - window_opens
    print(f"policy e2e: shared {shared_rate:.2f}/s of 10, spread {spread_rate:.2f}/s of 5,")
    print(f"  spread gaps {min(gaps):.3f}-{max(gaps):.3f} s, window done {done:.2f} s")
    assert shared_rate == pytest.approx(10, rel=0.1)
    assert min(gaps) >= 0.2 - 0.02, gaps  # T/N apart (the fake times arrivals, +-jitter)
    assert max_in_window(spread, 1.0) <= 5
    assert spread_rate == pytest.approx(5, rel=0.1)
