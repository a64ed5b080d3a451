"""The release policy at the claim (claims.claim_next on the real database): nothing is claimed
outside the allowed time, the queue is woken when it opens (no polling), a window ends with its
span, spread windows are T/N apart, priority decides the order, and a policy change applies from
the next release. Policies are set relative to the database clock, so nothing sleeps."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.release_helpers import backlog, query
from throttle_app.extensions import db
from throttle_app.release import claims, next_look
from throttle_app.release.claims import Claim, Idle
from throttle_app.release.policy_gate import window_size

LEAD = timedelta(0)


def db_now(app) -> datetime:
    return query(app, "SELECT clock_timestamp()")[0][0]


def set_policy(app, queue: int, **columns) -> None:
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    query(app, f"UPDATE throttle_queues SET {assignments} WHERE id = :id", id=queue, **columns)


def claim(app, queue: int, batch: int = 100, min_call_interval: float = 0.0):
    with app.app_context():
        result = claims.claim_next(db.session, queue, batch, 30, LEAD, min_call_interval)
        look = next_look.next_look(db.session, queue, LEAD)
        db.session.remove()
    return result, look


def queue_row(app, queue: int):
    return query(
        app,
        "SELECT window_budget, window_period_seconds, next_release_at FROM throttle_queues"
        " WHERE id = :id",
        id=queue,
    )[0]


def test_before_start_at_nothing_is_claimed_and_the_queue_wakes_at_it(app):
    queue = backlog(app, 5, 5, 60)
    start = db_now(app) + timedelta(minutes=10)
    set_policy(app, queue, start_at=start)
    result, look = claim(app, queue)
    assert isinstance(result, Idle)
    assert queue_row(app, queue).next_release_at == start
    assert 590 < look <= 600  # woken when it opens, not polled


def test_after_start_at_the_rate_applies(app):
    queue = backlog(app, 5, 2, 60)
    set_policy(app, queue, start_at=db_now(app) - timedelta(seconds=1))
    result, _ = claim(app, queue)
    assert isinstance(result, Claim) and len(result.rows) == 2


def local_window(app, zone: str, start_in: timedelta, length: timedelta):
    """A window of the database clock's local time in `zone`, `start_in` from now."""
    from zoneinfo import ZoneInfo

    now = db_now(app).astimezone(ZoneInfo(zone))
    start = (now + start_in).replace(second=0, microsecond=0)
    return start.time(), (start + length).time()


def test_a_window_ahead_in_a_zone_waits_for_it(app):
    queue = backlog(app, 5, 5, 60)
    start, end = local_window(app, "Asia/Kolkata", timedelta(minutes=3), timedelta(minutes=5))
    set_policy(app, queue, window_start=start, window_end=end, time_zone="Asia/Kolkata")
    result, look = claim(app, queue)
    assert isinstance(result, Idle)
    assert 60 < look <= 180


def test_the_portals_zone_is_used_when_the_queue_has_none(app):
    queue = backlog(app, 5, 5, 60)
    query(
        app,
        "INSERT INTO oauth_tokens (portal_id, access_token, refresh_token, expires_at,"
        " time_zone) VALUES (50467010, 'a', 'r', now(), 'Australia/Adelaide')",
    )
    start, end = local_window(
        app, "Australia/Adelaide", timedelta(minutes=-1), timedelta(minutes=5)
    )
    set_policy(app, queue, window_start=start, window_end=end)
    result, _ = claim(app, queue)
    assert isinstance(result, Claim)  # open in Adelaide (in UTC this is another hour)


def test_a_day_not_listed_claims_nothing(app):
    queue = backlog(app, 5, 5, 60)
    today = db_now(app).astimezone(UTC).isoweekday()
    others = sum(1 << (day - 1) for day in range(1, 8) if day != today)
    set_policy(app, queue, release_days=others, time_zone="UTC")
    result, look = claim(app, queue)
    assert isinstance(result, Idle)
    assert 0 < look <= 86400


def test_a_window_ends_with_its_span(app):
    queue = backlog(app, 10, 10, 60)
    result, _ = claim(app, queue, batch=3)  # a window of 10 opens, 3 claimed
    assert isinstance(result, Claim)
    start, end = local_window(app, "UTC", timedelta(minutes=5), timedelta(minutes=5))
    set_policy(app, queue, window_start=start, window_end=end, time_zone="UTC")
    result, look = claim(app, queue, batch=3)
    assert isinstance(result, Idle)
    assert queue_row(app, queue).window_budget == 0
    assert 180 < look <= 300


@pytest.mark.parametrize(
    ("count", "seconds", "interval", "expected"),
    [
        (10, 1, 0.0, (1, 0.1)),
        (10, 1, 0.105, (2, 0.2)),  # the default bucket: 9.5 calls a second
        (10, 1, 0.25, (5, 0.5)),  # 3 per 0.3 s would put 12 in some second: 5 divides 10
        (7, 1, 0.2, (7, 1)),  # no divisor between: burst
        (60, 60, 0.105, (1, 1.0)),
        (1, 60, 0.105, (1, 60)),
    ],
)
def test_spread_window_size(count, seconds, interval, expected):
    assert window_size("spread", count, seconds, interval) == pytest.approx(expected)
    assert window_size("burst", count, seconds, interval) == (count, seconds)


def test_spread_claims_one_at_a_time_t_over_n_apart(app):
    queue = backlog(app, 10, 10, 1)
    set_policy(app, queue, release_mode="spread")
    first, _ = claim(app, queue)
    assert isinstance(first, Claim) and len(first.rows) == 1
    row = queue_row(app, queue)
    assert row.window_period_seconds == pytest.approx(0.1)
    query(app, "UPDATE action_executions SET state = 'completed' WHERE state = 'claimed'")
    query(app, claims.RECOMPUTE_NEXT_RELEASE.text, queue_id=queue)  # as a marking does
    ready = queue_row(app, queue).next_release_at
    assert (ready - first.window_opens_at).total_seconds() >= 0.1  # the next one T/N later
    time.sleep(max(0.0, (ready - db_now(app)).total_seconds()))
    second, _ = claim(app, queue)
    assert isinstance(second, Claim) and len(second.rows) == 1
    assert (second.window_opens_at - first.window_opens_at).total_seconds() >= 0.1


def test_priority_first_then_fifo(app):
    queue = backlog(app, 6, 3, 60)
    query(
        app,
        "UPDATE action_executions SET priority = CASE callback_id"
        " WHEN 'b-4' THEN 9 WHEN 'b-1' THEN 5 WHEN 'b-5' THEN 5 ELSE 0 END",
    )
    result, _ = claim(app, queue)
    assert sorted(row.callback_id for row in result.rows) == ["b-1", "b-4", "b-5"]


def test_a_policy_change_ends_the_old_policys_wait(app, client):
    from tests.support.hubspot_requests import execution_payload, post_execution

    def admit(callback_id: str, **inputs):
        payload = execution_payload(callback_id=callback_id, max_throughput="5")
        payload["inputFields"].update(inputs)
        assert post_execution(client, payload).status_code == 200

    later = (db_now(app) + timedelta(hours=5)).isoformat()
    admit("cb-1", startAt=later)
    queue = query(app, "SELECT id FROM throttle_queues")[0][0]
    assert isinstance(claim(app, queue)[0], Idle)
    assert queue_row(app, queue).next_release_at is not None
    admit("cb-2")  # the admin removed the start time
    assert queue_row(app, queue).next_release_at is None
    result, _ = claim(app, queue)
    assert isinstance(result, Claim) and len(result.rows) == 2


def test_a_spread_queue_runs_its_windows_in_one_job(engine_app, fake):
    """Windows T/N apart are waited for inside the release job (a new job per window would
    open them late); a burst queue's job ends at its first wait, as before."""
    from tests.release.engine import run_release

    spread = backlog(engine_app, 4, 10, 1, name="s")  # 1 per 0.1 s, ~0.2 s with the bucket
    set_policy(engine_app, spread, release_mode="spread")
    report = run_release(engine_app, spread, sleep=time.sleep)
    assert report.claimed == 4
    burst = backlog(engine_app, 4, 2, 1, name="b")
    assert run_release(engine_app, burst, sleep=time.sleep).claimed == 2
