"""The policy input fields (release/policy_fields.py via policy.parse_policy): every accepted
form, and every bad value rejected with the field's name."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from throttle_app.input_fields import FieldError
from throttle_app.release.policy import ReleasePolicy, parse_policy


def test_no_fields_is_todays_behaviour():
    assert parse_policy({}) == ReleasePolicy()


def test_blank_fields_are_absent():
    blank = {
        name: "  "
        for name in ("mode", "releaseDays", "windowStart", "windowEnd", "timeZone", "startAt")
    }
    assert parse_policy(blank) == ReleasePolicy()
    assert parse_policy(dict.fromkeys(blank)) == ReleasePolicy()


def test_every_field():
    policy = parse_policy(
        {
            "mode": " Spread ",
            "releaseDays": "mon;TUE, wed ,fri;",
            "windowStart": "9:05",
            "windowEnd": "17:00",
            "timeZone": "america/new_york",
            "startAt": "2027-03-14T09:00:00-04:00",
        }
    )
    assert policy == ReleasePolicy(
        mode="spread",
        days=frozenset({1, 2, 3, 5}),
        window_start=time(9, 5),
        window_end=time(17),
        time_zone="America/New_York",
        start_at=datetime(2027, 3, 14, 13, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-03-14T09:00:00Z", datetime(2027, 3, 14, 9, tzinfo=UTC)),
        ("2027-03-14T09:00:00.250+05:30", datetime(2027, 3, 14, 3, 30, 0, 250000, tzinfo=UTC)),
        ("1805007600000", datetime(2027, 3, 14, 7, tzinfo=UTC)),
        (1805007600123, datetime(2027, 3, 14, 7, 0, 0, 123000, tzinfo=UTC)),
        (1805007600000.0, datetime(2027, 3, 14, 7, tzinfo=UTC)),
        ("0", datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_start_at_forms(value, expected):
    assert parse_policy({"startAt": value}).start_at == expected


def test_release_days_as_a_list():
    assert parse_policy({"releaseDays": ["SAT", "sun"]}).days == frozenset({6, 7})


def test_window_past_midnight_and_equal_ends_are_accepted():
    assert parse_policy({"windowStart": "22:00", "windowEnd": "06:00"}).window_end == time(6)
    assert parse_policy({"windowStart": "00:00", "windowEnd": "00:00"}).window_start == time(0)


BAD_VALUES = [
    ("mode", "fast"),
    ("mode", 1),
    ("mode", ["spread"]),
    ("mode", True),
    ("releaseDays", "MONDAY"),
    ("releaseDays", "MON TUE"),
    ("releaseDays", ",;"),
    ("releaseDays", "MON," * 40),
    ("releaseDays", 5),
    ("releaseDays", ["MON", 2]),
    ("releaseDays", ["MON"] * 30),
    ("releaseDays", "LUN"),
    ("releaseDays", "M\x00N"),
    ("windowStart", "24:00"),
    ("windowStart", "9"),
    ("windowStart", "09:60"),
    ("windowStart", "09:00:00"),
    ("windowStart", "-1:00"),
    ("windowStart", "\uff19:00"),  # full-width digit
    ("windowStart", 900),
    ("windowStart", "9am"),
    ("windowEnd", "25:00"),
    ("windowEnd", "17.00"),
    ("timeZone", "Mars/Olympus"),
    ("timeZone", "EST5EDT/../../etc/passwd"),
    ("timeZone", "/etc/localtime"),
    ("timeZone", "localtime"),
    ("timeZone", "x" * 65),
    ("timeZone", 1),
    ("timeZone", "Europe/Berlin\x00"),
    ("startAt", "2027-03-14T09:00:00"),  # no offset
    ("startAt", "2027-03-14"),
    ("startAt", "tomorrow"),
    ("startAt", "-1"),
    ("startAt", -1),
    ("startAt", "1" * 19),
    ("startAt", 10**20),
    ("startAt", 253402300800000),  # after year 9999
    ("startAt", 1.5),
    ("startAt", True),
    ("startAt", ["2027-03-14T09:00:00Z"]),
    ("startAt", "2027-03-14T09:00:00Z" + " " * 60 + "x"),
    ("startAt", "0001-01-01T00:00:00+01:00"),
    ("startAt", "\uff12\uff10\uff12\uff17-03-14T09:00:00Z"),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_bad_values_name_their_field(field, value):
    fields = {field: value}
    if field == "windowStart":
        fields["windowEnd"] = "17:00"
    if field == "windowEnd":
        fields["windowStart"] = "09:00"
    with pytest.raises(FieldError) as error:
        parse_policy(fields)
    assert error.value.field == field


@pytest.mark.parametrize(
    ("given", "missing"), [("windowStart", "windowEnd"), ("windowEnd", "windowStart")]
)
def test_one_end_of_a_window_alone_names_the_other(given, missing):
    with pytest.raises(FieldError) as error:
        parse_policy({given: "09:00"})
    assert error.value.field == missing
