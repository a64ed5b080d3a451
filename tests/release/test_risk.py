"""Expiry risk (release/risk.py) with a movable clock: the instant is a parameter."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from throttle_app.release.policy import ReleasePolicy, zone_for
from throttle_app.release.risk import Outlook, assess, next_release

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)  # a Thursday
HOUR = timedelta(hours=1)
UTC_ZONE = ZoneInfo("UTC")


def outlook(backlog: int, hold: datetime | None, rate=(10, 3600), **changes) -> Outlook:
    values = dict(
        policy=ReleasePolicy(),
        zone=UTC_ZONE,
        max_throughput=rate[0],
        period_seconds=rate[1],
        backlog=backlog,
        oldest_hold_expiry=hold,
    )
    return Outlook(**(values | changes))


def test_an_empty_queue_has_no_eta_and_no_risk():
    risk = assess(outlook(0, None), NOW)
    assert not risk.at_risk and risk.drain_eta is None and risk.expires_at is None


def test_a_backlog_that_drains_before_the_oldest_hold_is_safe():
    # 100 at 10 per hour, burst: the 10th window opens 9 hours from now.
    risk = assess(outlook(100, NOW + 10 * HOUR), NOW)
    assert risk.drain_eta == NOW + 9 * HOUR
    assert not risk.at_risk and risk.expires_at is None


def test_a_backlog_that_drains_after_the_oldest_hold_is_at_risk_from_that_hold():
    risk = assess(outlook(100, NOW + 8 * HOUR), NOW)
    assert risk.at_risk and risk.drain_eta == NOW + 9 * HOUR
    assert risk.expires_at == NOW + 8 * HOUR  # when the first record would leave unthrottled


def test_draining_exactly_at_the_hold_end_is_not_at_risk():
    assert not assess(outlook(100, NOW + 9 * HOUR), NOW).at_risk


def test_moving_the_clock_makes_a_queue_at_risk():
    """The same backlog is safe now and at risk two hours later (nothing released meanwhile,
    e.g. a HubSpot outage): the hold came closer, the drain did not."""
    queue = outlook(100, NOW + 10 * HOUR)
    assert not assess(queue, NOW).at_risk
    later = assess(queue, NOW + 2 * HOUR)
    assert later.at_risk and later.drain_eta == NOW + 11 * HOUR


def test_the_next_window_delays_the_drain():
    queue = outlook(10, NOW + 2 * HOUR, next_release_at=NOW + 3 * HOUR)
    risk = assess(queue, NOW)
    assert risk.drain_eta == NOW + 3 * HOUR and risk.at_risk


def test_spread_spaces_each_release():
    # 10 per hour spread: one every 6 minutes; the 10th leaves 54 minutes from now.
    risk = assess(outlook(10, NOW + HOUR, policy=ReleasePolicy(mode="spread")), NOW)
    assert risk.drain_eta == NOW + timedelta(minutes=54) and not risk.at_risk


def test_a_weekday_window_pushes_the_drain_past_a_weekend_hold():
    """MON-FRI 09:00-17:00 New York, 10 per hour: on Friday at 16:00 local one window is left
    today; the second batch waits for Monday 09:00, after holds that end on Saturday."""
    policy = ReleasePolicy(
        days=frozenset(range(1, 6)),
        window_start=time(9),
        window_end=time(17),
        time_zone="America/New_York",
    )
    zone = zone_for(policy, None)
    friday = datetime(2026, 12, 4, 16, 0, tzinfo=zone)
    saturday = datetime(2026, 12, 5, 12, 0, tzinfo=zone)
    monday_nine = datetime(2026, 12, 7, 9, 0, tzinfo=zone)
    risk = assess(outlook(20, saturday, policy=policy, zone=zone), friday)
    assert risk.at_risk and risk.drain_eta == monday_nine and risk.expires_at == saturday
    # The same backlog with holds ending on Tuesday is safe.
    assert not assess(
        outlook(20, monday_nine + 24 * HOUR, policy=policy, zone=zone), friday
    ).at_risk


def test_a_start_time_after_the_hold_is_at_risk():
    policy = ReleasePolicy(start_at=NOW + 48 * HOUR)
    risk = assess(outlook(1, NOW + 24 * HOUR, policy=policy), NOW)
    assert risk.at_risk and risk.drain_eta == NOW + 48 * HOUR


def test_a_queue_whose_portal_cannot_release_is_at_risk_while_it_holds_anything():
    stuck = assess(outlook(5, NOW + 30 * 24 * HOUR, releasing=False), NOW)
    assert stuck.at_risk and stuck.drain_eta is None
    assert stuck.expires_at == NOW + 30 * 24 * HOUR
    in_flight_only = assess(outlook(5, None, releasing=False), NOW)  # only claimed rows
    assert not in_flight_only.at_risk
    assert next_release(outlook(5, NOW + HOUR, releasing=False), NOW) is None


def test_the_next_release_follows_the_window_and_the_policy():
    assert next_release(outlook(5, NOW + HOUR), NOW) == NOW
    assert next_release(outlook(5, NOW + HOUR, next_release_at=NOW + HOUR), NOW) == NOW + HOUR
    weekend = ReleasePolicy(days=frozenset({6, 7}))  # NOW is a Thursday
    saturday = datetime(2026, 12, 5, tzinfo=UTC)
    assert next_release(outlook(5, NOW + HOUR, policy=weekend), NOW) == saturday
    assert next_release(outlook(0, None), NOW) is None


def test_a_draining_queue_is_not_at_risk():
    assert not assess(outlook(10_000, NOW + HOUR, draining=True), NOW).at_risk


def test_an_expired_but_unswept_hold_is_at_risk():
    risk = assess(outlook(1, NOW - timedelta(seconds=1)), NOW)
    assert risk.at_risk and risk.drain_eta == NOW


def test_a_policy_only_delays_so_a_rate_that_is_already_late_answers_at_once():
    """100,000 at 10 per hour cannot drain in a week whatever the policy: the answer comes
    from the rate alone, with its drain time as a lower bound (no walk over years of spans)."""
    policy = ReleasePolicy(days=frozenset({1}), window_start=time(9), window_end=time(10))
    risk = assess(outlook(100_000, NOW + 7 * 24 * HOUR, policy=policy), NOW)
    assert risk.at_risk and risk.eta_at_least
    assert risk.drain_eta == NOW + 9_999 * HOUR
    exact = assess(outlook(10, NOW + 7 * 24 * HOUR, policy=policy), NOW)
    assert not exact.at_risk and not exact.eta_at_least
    assert exact.drain_eta == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # Monday 09:00
