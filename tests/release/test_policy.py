"""Release-policy arithmetic (release/policy.py): windows, days, start times and daylight-saving
changes, as a user reads them on a clock in the policy's zone. Pure: every function is given
the instant, so a test moves time by passing another one."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from throttle_app.release.local_time import first_instant
from throttle_app.release.policy import (
    ReleasePolicy,
    describe,
    next_open,
    open_until,
    release_eta,
    zone_for,
)

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
ADELAIDE = ZoneInfo("Australia/Adelaide")
MON_FRI = frozenset({1, 2, 3, 4, 5})
OFFICE = ReleasePolicy(days=MON_FRI, window_start=time(9), window_end=time(17))


CHANGES = [
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2027, 3, 14, 7, tzinfo=UTC),
    datetime(2027, 11, 7, 6, tzinfo=UTC),
    datetime(2027, 3, 28, 1, tzinfo=UTC),
    datetime(2027, 10, 31, 1, tzinfo=UTC),
    datetime(2027, 4, 3, 16, 30, tzinfo=UTC),
    datetime(2027, 10, 2, 16, 30, tzinfo=UTC),
]
ZONE_NAMES = [
    "America/New_York",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Australia/Adelaide",
    "Australia/Lord_Howe",  # a 30-minute daylight-saving change
    "Asia/Kathmandu",
    "UTC",
]


def zones():
    return st.sampled_from(ZONE_NAMES).map(ZoneInfo)


def wall_times():
    return st.builds(time, st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 59]))


def instants():
    anywhere = st.integers(0, 3 * 365 * 86400).map(
        lambda s: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=s)
    )
    near_changes = st.builds(
        lambda change, s: change + timedelta(seconds=s),
        st.sampled_from(CHANGES),
        st.integers(-2 * 86400, 2 * 86400),
    )
    return st.one_of(anywhere, near_changes)


@st.composite
def policies(draw):
    days = draw(st.none() | st.frozensets(st.integers(1, 7), min_size=1))
    window = draw(st.none() | st.tuples(wall_times(), wall_times()))
    start_at = draw(st.none() | instants())
    return ReleasePolicy(
        mode=draw(st.sampled_from(["burst", "spread"])),
        days=days,
        window_start=window[0] if window else None,
        window_end=window[1] if window else None,
        start_at=start_at,
    )


def at(zone: ZoneInfo, *parts: int, fold: int = 0) -> datetime:
    """A local wall time as an aware instant."""
    return datetime(*parts, tzinfo=zone, fold=fold)


def local(instant: datetime | None, zone: ZoneInfo) -> tuple[int, ...]:
    """(y, m, d, H, M) of an instant on the zone's clock, for readable assertions."""
    assert instant is not None
    moment = instant.astimezone(zone)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute)


def is_open(policy: ReleasePolicy, zone: ZoneInfo, instant: datetime) -> bool:
    return next_open(policy, zone, instant) == instant


class TestNoRestriction:
    def test_always_open_and_never_closes(self):
        policy = ReleasePolicy()
        now = datetime(2027, 1, 1, tzinfo=UTC)
        assert not policy.restricts_time
        assert next_open(policy, NY, now) == now
        assert open_until(policy, NY, now) is None

    def test_spread_alone_restricts_no_time(self):
        assert not ReleasePolicy(mode="spread").restricts_time


class TestWindow:
    def test_before_the_window_waits_for_its_start(self):
        instant = at(NY, 2027, 6, 1, 8, 15)  # a Tuesday
        assert local(next_open(OFFICE, NY, instant), NY) == (2027, 6, 1, 9, 0)

    def test_inside_the_window_is_open_until_its_end(self):
        instant = at(NY, 2027, 6, 1, 12, 0)
        assert next_open(OFFICE, NY, instant) == instant
        assert local(open_until(OFFICE, NY, instant), NY) == (2027, 6, 1, 17, 0)

    def test_the_end_is_excluded_the_start_included(self):
        assert not is_open(OFFICE, NY, at(NY, 2027, 6, 1, 17, 0))
        assert is_open(OFFICE, NY, at(NY, 2027, 6, 1, 9, 0))
        assert is_open(OFFICE, NY, at(NY, 2027, 6, 1, 16, 59, 59))

    def test_after_the_window_waits_for_the_next_day(self):
        instant = at(NY, 2027, 6, 1, 17, 30)
        assert local(next_open(OFFICE, NY, instant), NY) == (2027, 6, 2, 9, 0)

    def test_friday_evening_waits_for_monday(self):
        instant = at(NY, 2027, 6, 4, 17, 0)  # Friday
        assert local(next_open(OFFICE, NY, instant), NY) == (2027, 6, 7, 9, 0)

    def test_closed_instant_open_until_is_itself(self):
        instant = at(NY, 2027, 6, 5, 12, 0)  # Saturday
        assert open_until(OFFICE, NY, instant) == instant

    def test_the_window_is_local_to_its_zone_not_utc(self):
        instant = datetime(2027, 6, 1, 12, 30, tzinfo=UTC)  # 08:30 in New York
        assert not is_open(OFFICE, NY, instant)
        assert is_open(OFFICE, BERLIN, instant)  # 14:30 in Berlin


class TestPastMidnight:
    NIGHT = ReleasePolicy(days=frozenset({5}), window_start=time(22), window_end=time(6))

    def test_the_window_belongs_to_the_day_it_starts(self):
        # Friday 22:00 to Saturday 06:00; Saturday is not listed, the window still runs
        assert is_open(self.NIGHT, BERLIN, at(BERLIN, 2027, 6, 5, 3, 0))  # Saturday 03:00
        assert local(open_until(self.NIGHT, BERLIN, at(BERLIN, 2027, 6, 5, 3, 0)), BERLIN) == (
            2027,
            6,
            5,
            6,
            0,
        )

    def test_early_friday_is_not_thursdays_window(self):
        # Friday 03:00 would belong to Thursday's window, and Thursday is not listed
        instant = at(BERLIN, 2027, 6, 4, 3, 0)
        assert local(next_open(self.NIGHT, BERLIN, instant), BERLIN) == (2027, 6, 4, 22, 0)

    def test_equal_start_and_end_is_a_whole_day_from_the_start(self):
        policy = ReleasePolicy(days=frozenset({3}), window_start=time(9), window_end=time(9))
        wednesday_9 = at(BERLIN, 2027, 6, 2, 9, 0)
        assert local(open_until(policy, BERLIN, wednesday_9), BERLIN) == (2027, 6, 3, 9, 0)

    def test_every_day_past_midnight_spans_do_not_touch(self):
        policy = ReleasePolicy(window_start=time(22), window_end=time(6))
        assert local(open_until(policy, BERLIN, at(BERLIN, 2027, 6, 2, 23)), BERLIN)[2:4] == (3, 6)
        assert local(next_open(policy, BERLIN, at(BERLIN, 2027, 6, 3, 6)), BERLIN)[2:4] == (3, 22)


class TestDays:
    WEEKEND = ReleasePolicy(days=frozenset({6, 7}))

    def test_a_listed_day_is_open_all_local_day(self):
        saturday = at(NY, 2027, 6, 5, 0, 0)
        assert is_open(self.WEEKEND, NY, saturday)
        # Saturday and Sunday touch: one span to Monday 00:00
        assert local(open_until(self.WEEKEND, NY, saturday), NY) == (2027, 6, 7, 0, 0)

    def test_a_day_not_listed_waits_for_the_next_listed_one(self):
        assert local(next_open(self.WEEKEND, NY, at(NY, 2027, 6, 7, 0, 0)), NY) == (
            2027,
            6,
            12,
            0,
            0,
        )

    def test_every_day_listed_never_closes(self):
        policy = ReleasePolicy(days=frozenset(range(1, 8)))
        assert open_until(policy, NY, at(NY, 2027, 6, 7, 5)) is None

    def test_whole_day_window_every_day_never_closes(self):
        policy = ReleasePolicy(window_start=time(0), window_end=time(0))
        assert open_until(policy, NY, at(NY, 2027, 6, 7, 5)) is None


class TestStartAt:
    def test_nothing_before_it(self):
        start = datetime(2027, 6, 1, 12, tzinfo=UTC)
        policy = ReleasePolicy(start_at=start)
        assert policy.restricts_time
        assert next_open(policy, NY, start - timedelta(days=3)) == start
        assert open_until(policy, NY, start - timedelta(seconds=1)) == start - timedelta(seconds=1)
        assert next_open(policy, NY, start) == start
        assert open_until(policy, NY, start) is None

    def test_start_inside_a_closed_time_waits_for_the_window(self):
        policy = ReleasePolicy(
            window_start=time(9), window_end=time(17), start_at=at(NY, 2027, 6, 1, 18, 0)
        )
        assert local(next_open(policy, NY, at(NY, 2027, 5, 1)), NY) == (2027, 6, 2, 9, 0)

    def test_start_inside_a_window_opens_at_the_start(self):
        policy = ReleasePolicy(
            window_start=time(9), window_end=time(17), start_at=at(NY, 2027, 6, 1, 10, 30)
        )
        assert local(next_open(policy, NY, at(NY, 2027, 6, 1, 9)), NY) == (2027, 6, 1, 10, 30)


class TestDaylightSaving:
    """A 09:00-17:00 window is 09:00-17:00 on the local clock on both sides of a change."""

    @pytest.mark.parametrize(
        ("zone", "change_day", "before_hours", "after_hours"),
        [
            (NY, (2027, 3, 14), 5, 4),  # spring: EST (-5) -> EDT (-4)
            (NY, (2027, 11, 7), 4, 5),  # autumn
            (BERLIN, (2027, 3, 28), -1, -2),  # CET (+1) -> CEST (+2)
            (BERLIN, (2027, 10, 31), -2, -1),
        ],
    )
    def test_office_hours_follow_the_clock(self, zone, change_day, before_hours, after_hours):
        policy = ReleasePolicy(window_start=time(9), window_end=time(17))
        day = datetime(*change_day)
        for offset_days, hours in ((-1, before_hours), (1, after_hours), (0, after_hours)):
            date = day + timedelta(days=offset_days)
            opens = next_open(policy, zone, datetime(*date.timetuple()[:3], tzinfo=UTC))
            assert opens == datetime(*date.timetuple()[:3], 9 + hours, tzinfo=UTC)
            assert open_until(policy, zone, opens) - opens == timedelta(hours=8)

    def test_spring_window_across_the_change_is_an_hour_shorter(self):
        policy = ReleasePolicy(window_start=time(0), window_end=time(6))
        opens = next_open(policy, NY, at(NY, 2027, 3, 13, 23))
        assert open_until(policy, NY, opens) - opens == timedelta(hours=5)

    def test_autumn_window_across_the_change_is_an_hour_longer(self):
        policy = ReleasePolicy(window_start=time(0), window_end=time(6))
        opens = next_open(policy, BERLIN, at(BERLIN, 2027, 10, 30, 23))
        assert open_until(policy, BERLIN, opens) - opens == timedelta(hours=7)

    def test_night_window_over_the_spring_change(self):
        # 22:00 Saturday to 06:00 Sunday, the night New York loses an hour: 7 real hours
        policy = ReleasePolicy(window_start=time(22), window_end=time(6))
        opens = next_open(policy, NY, at(NY, 2027, 3, 13, 12))
        assert local(opens, NY) == (2027, 3, 13, 22, 0)
        assert open_until(policy, NY, opens) - opens == timedelta(hours=7)

    def test_a_start_time_the_clock_skips_opens_at_the_jump(self):
        # 2027-03-14 02:30 does not exist in New York: the clock goes 01:59:59 -> 03:00
        policy = ReleasePolicy(window_start=time(2, 30), window_end=time(4))
        opens = next_open(policy, NY, at(NY, 2027, 3, 14, 0))
        assert opens == datetime(2027, 3, 14, 7, 0, tzinfo=UTC)  # 03:00 EDT
        assert local(open_until(policy, NY, opens), NY) == (2027, 3, 14, 4, 0)

    def test_a_window_wholly_inside_the_skipped_hour_does_not_open_that_day(self):
        policy = ReleasePolicy(window_start=time(2, 10), window_end=time(2, 50))
        opens = next_open(policy, BERLIN, at(BERLIN, 2027, 3, 28, 0))
        assert local(opens, BERLIN) == (2027, 3, 29, 2, 10)

    def test_a_time_the_clock_shows_twice_is_its_first_occurrence(self):
        # 2027-11-07 01:30 happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST)
        policy = ReleasePolicy(window_start=time(1, 30), window_end=time(3))
        opens = next_open(policy, NY, at(NY, 2027, 11, 7, 0))
        assert opens == datetime(2027, 11, 7, 5, 30, tzinfo=UTC)
        assert open_until(policy, NY, opens) == datetime(2027, 11, 7, 8, 0, tzinfo=UTC)

    def test_a_window_ending_at_a_repeated_time_ends_at_its_first_occurrence(self):
        policy = ReleasePolicy(window_start=time(0), window_end=time(2, 30))
        opens = next_open(policy, BERLIN, at(BERLIN, 2027, 10, 31, 0))
        # 02:30 CEST is 00:30 UTC; the second 02:30 (CET) is not in the window
        assert open_until(policy, BERLIN, opens) == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)
        assert not is_open(policy, BERLIN, datetime(2027, 10, 31, 1, 15, tzinfo=UTC))


class TestHalfHourZones:
    def test_kolkata_window(self):
        policy = ReleasePolicy(window_start=time(9), window_end=time(17, 30))
        opens = next_open(policy, KOLKATA, datetime(2027, 6, 1, 0, tzinfo=UTC))
        assert opens == datetime(2027, 6, 1, 3, 30, tzinfo=UTC)  # +05:30
        assert open_until(policy, KOLKATA, opens) == datetime(2027, 6, 1, 12, tzinfo=UTC)

    def test_adelaide_half_hour_offset_and_its_dst(self):
        policy = ReleasePolicy(window_start=time(9), window_end=time(17))
        # ACDT +10:30 until 2027-04-04 03:00, then ACST +09:30
        before = next_open(policy, ADELAIDE, datetime(2027, 4, 2, 12, tzinfo=UTC))
        after = next_open(policy, ADELAIDE, datetime(2027, 4, 4, 12, tzinfo=UTC))
        assert before == datetime(2027, 4, 2, 22, 30, tzinfo=UTC)  # 09:00 ACDT on the 3rd
        assert after == datetime(2027, 4, 4, 23, 30, tzinfo=UTC)  # 09:00 ACST on the 5th


class TestFirstInstant:
    def test_samoa_skipped_a_whole_day(self):
        apia = ZoneInfo("Pacific/Apia")
        # 2011-12-30 never happened in Samoa: every wall time of it is the jump to the 31st
        jump = first_instant(apia, datetime(2011, 12, 30).date(), time(12))
        assert jump.astimezone(apia).replace(tzinfo=None) == datetime(2011, 12, 31, 0, 0)

    def test_samoa_policy_skips_the_missing_day(self):
        apia = ZoneInfo("Pacific/Apia")
        policy = ReleasePolicy(days=frozenset({5}), window_start=time(9), window_end=time(10))
        # Friday 2011-12-30 did not exist: the next Friday window is 2012-01-06
        opens = next_open(policy, apia, at(apia, 2011, 12, 29, 12))
        assert local(opens, apia) == (2012, 1, 6, 9, 0)


class TestZoneFor:
    def test_policy_zone_wins_then_portal_then_utc(self):
        assert zone_for(ReleasePolicy(time_zone="Europe/Berlin"), "America/New_York") == BERLIN
        assert zone_for(ReleasePolicy(), "America/New_York") == NY
        assert zone_for(ReleasePolicy(), None) == ZoneInfo("UTC")

    @pytest.mark.parametrize("bad", ["Not/AZone", "../../etc/passwd", "localtime", "", "/etc/tz"])
    def test_a_stored_name_that_is_not_a_zone_is_utc(self, bad):
        assert zone_for(ReleasePolicy(), bad) == ZoneInfo("UTC")


class TestReleaseEta:
    NOW = datetime(2027, 6, 1, 12, tzinfo=UTC)  # Tuesday

    def test_no_backlog_no_eta(self):
        assert release_eta(ReleasePolicy(), NY, 10, 60, 0, self.NOW) is None

    def test_burst_n_every_t(self):
        policy = ReleasePolicy()
        assert release_eta(policy, NY, 10, 60, 10, self.NOW) == self.NOW
        assert release_eta(policy, NY, 10, 60, 11, self.NOW) == self.NOW + timedelta(minutes=1)
        assert release_eta(policy, NY, 10, 60, 100, self.NOW) == self.NOW + timedelta(minutes=9)

    def test_spread_one_every_t_over_n(self):
        policy = ReleasePolicy(mode="spread")
        assert release_eta(policy, NY, 10, 60, 1, self.NOW) == self.NOW
        assert release_eta(policy, NY, 10, 60, 11, self.NOW) == self.NOW + timedelta(minutes=1)
        assert release_eta(policy, NY, 3, 1, 4, self.NOW) == self.NOW + timedelta(seconds=1)

    def test_starts_no_earlier_than_next_release(self):
        later = self.NOW + timedelta(seconds=30)
        assert release_eta(ReleasePolicy(), NY, 10, 60, 5, self.NOW, later) == later

    def test_windows_carry_the_rest_to_the_next_day(self):
        # 09:00-17:00 NY, 100 per hour: 8 releases a day; the 1,000th record is on release 10,
        # the second one of Wednesday (10:00)
        eta = release_eta(OFFICE, NY, 100, 3600, 1000, self.NOW)
        assert local(eta, NY) == (2027, 6, 2, 10, 0)

    def test_a_release_is_not_started_at_or_after_the_close(self):
        policy = ReleasePolicy(window_start=time(9), window_end=time(9, 2, 30))
        # releases at 09:00, 09:01, 09:02 (09:02 < 09:02:30), then the next day
        eta = release_eta(policy, NY, 1, 60, 4, at(NY, 2027, 6, 1, 8))
        assert local(eta, NY) == (2027, 6, 2, 9, 0)

    def test_start_at_and_days(self):
        policy = ReleasePolicy(days=frozenset({7}), start_at=at(NY, 2027, 6, 13, 12))
        eta = release_eta(policy, NY, 1, 3600, 3, self.NOW)
        assert local(eta, NY) == (2027, 6, 13, 14, 0)

    def test_huge_backlogs_are_extrapolated_not_walked_for_ever(self):
        policy = ReleasePolicy(window_start=time(9), window_end=time(9, 1))
        eta = release_eta(policy, NY, 1, 60, 10_000, self.NOW)
        assert eta is not None
        assert timedelta(days=9_990) < eta - self.NOW < timedelta(days=10_010)


class TestDescribe:
    def test_the_issue_example(self):
        policy = ReleasePolicy(
            mode="spread",
            days=MON_FRI,
            window_start=time(9),
            window_end=time(17),
            time_zone="America/New_York",
        )
        assert describe(policy, 10, 1) == "10 per 1 s, spread, MON-FRI 09:00-17:00 America/New_York"

    def test_plain_rate(self):
        assert describe(ReleasePolicy(), 50, 3600) == "50 per 1 h"
        assert describe(ReleasePolicy(), 5, 120) == "5 per 2 min"
        assert describe(ReleasePolicy(), 5, 90) == "5 per 90 s"
        assert describe(ReleasePolicy(), 5, 86400 * 2) == "5 per 2 d"

    def test_portal_zone_when_the_policy_has_none(self):
        policy = ReleasePolicy(days=frozenset({1, 3, 6, 7}))
        assert (
            describe(policy, 1, 60, "Europe/Berlin") == "1 per 1 min, MON,WED,SAT,SUN Europe/Berlin"
        )
        assert describe(policy, 1, 60) == "1 per 1 min, MON,WED,SAT,SUN UTC"

    def test_start_in_the_zone(self):
        policy = ReleasePolicy(
            start_at=datetime(2027, 3, 14, 14, tzinfo=UTC), time_zone="Asia/Kolkata"
        )
        assert describe(policy, 1, 1) == "1 per 1 s, from 2027-03-14 19:30 Asia/Kolkata"


class TestProperties:
    """For generated policies, zones and instants (2026-2028, dense around the changes)."""

    @given(policy=policies(), zone=zones(), instant=instants())
    def test_next_open_is_the_first_open_instant(self, policy, zone, instant):
        opens = next_open(policy, zone, instant)
        assert opens is not None and opens >= instant
        assert is_open(policy, zone, opens)
        if opens > instant:  # from anywhere in between, the same next opening
            for fraction in (0.0001, 0.25, 0.5, 0.9999):
                between = instant + (opens - instant) * fraction
                if instant < between < opens:
                    assert next_open(policy, zone, between) == opens

    @given(policy=policies(), zone=zones(), instant=instants())
    def test_open_until_bounds_the_open_span(self, policy, zone, instant):
        until = open_until(policy, zone, instant)
        if not is_open(policy, zone, instant):
            assert until == instant
            return
        assert until is None or until > instant
        if until is None:
            return
        for fraction in (0.25, 0.5, 0.9999):
            assert is_open(policy, zone, instant + (until - instant) * fraction)
        assert not is_open(policy, zone, until)

    @given(policy=policies(), zone=zones(), instant=instants())
    def test_open_agrees_with_the_wall_clock_away_from_changes(self, policy, zone, instant):
        offsets = {
            (instant + timedelta(hours=h)).astimezone(zone).utcoffset() for h in range(-50, 51)
        }
        assume(len(offsets) == 1)
        assert is_open(policy, zone, instant) == wall_clock_open(policy, zone, instant)

    @given(
        policy=policies(),
        zone=zones(),
        instant=instants(),
        count=st.integers(1, 20),
        seconds=st.sampled_from([1, 60, 3600]),
        backlog=st.integers(1, 200),
    )
    def test_eta_is_open_and_grows_with_the_backlog(
        self, policy, zone, instant, count, seconds, backlog
    ):
        first = release_eta(policy, zone, count, seconds, backlog, instant)
        second = release_eta(policy, zone, count, seconds, backlog + count, instant)
        assert first is not None and second is not None
        assert instant <= first < second
        assert is_open(policy, zone, first) and is_open(policy, zone, second)


def wall_clock_open(policy: ReleasePolicy, zone: ZoneInfo, instant: datetime) -> bool:
    """Openness read off the local clock, as a person would (valid where no change is near)."""
    if policy.start_at is not None and instant < policy.start_at:
        return False
    wall = instant.astimezone(zone)
    if policy.window_start is None or policy.window_end is None:
        return policy.days is None or wall.isoweekday() in policy.days
    now, start, end = wall.time(), policy.window_start, policy.window_end
    if end > start:
        in_window, day = start <= now < end, wall
    elif now >= start:
        in_window, day = True, wall
    else:
        in_window, day = now < end, wall - timedelta(days=1)
    return in_window and (policy.days is None or day.isoweekday() in policy.days)
