"""The release-policy input fields, one parser each: what HubSpot admins type into the action.

Every field is optional: absent, null or blank (HubSpot may send "" for a field left empty)
means today's behaviour. A bad value raises FieldError naming the field as HubSpot sends it.
Every pattern here is bounded and every text is length-capped before it is looked at.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import UTC, datetime, time, timedelta

from throttle_app.input_fields import ASCII_INTEGER, FieldError, bigint

MODES = ("burst", "spread")
DAY_NAMES = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_MAX_TEXT = 64
_MAX_DAYS_TEXT = 100
_WALL_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-/]{1,64}")
# Entries of the zone database that are not zones a user means.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
# Epoch milliseconds of 9999-12-31T23:59:59.999Z, the last instant datetime can hold.
_MAX_EPOCH_MS = 253_402_300_799_999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def blank(value: object) -> bool:
    """Absent: null, or a string of nothing but spaces."""
    return value is None or (isinstance(value, str) and not value.strip())


def parse_mode(value: object) -> str:
    if blank(value):
        return "burst"
    if isinstance(value, str) and value.strip().lower() in MODES:
        return value.strip().lower()
    raise FieldError("mode", "must be burst or spread")


def parse_days(value: object) -> frozenset[int] | None:
    """MON..SUN separated by , or ; (HubSpot's checkbox values), any case; a JSON list too."""
    field = "releaseDays"
    if blank(value):
        return None
    if isinstance(value, list):
        if len(value) > 7 * 3 or not all(isinstance(item, str) for item in value):
            raise FieldError(field, "must list days as MON, TUE, ..., SUN")
        value = ",".join(value)
    if not isinstance(value, str) or len(value) > _MAX_DAYS_TEXT:
        raise FieldError(field, "must list days as MON, TUE, ..., SUN separated by , or ;")
    days = set()
    for item in value.replace(";", ",").split(","):
        name = item.strip().upper()
        if not name:
            continue
        if name not in DAY_NAMES:
            raise FieldError(field, f"{item.strip()[:8]!r} is not a day (MON, TUE, ..., SUN)")
        days.add(DAY_NAMES.index(name) + 1)
    if not days:
        raise FieldError(field, "must list at least one day (MON, TUE, ..., SUN)")
    return frozenset(days)


def parse_window(start: object, end: object) -> tuple[time | None, time | None]:
    """windowStart and windowEnd, HH:MM 24 h: both or neither."""
    start_time = _wall_time("windowStart", start)
    end_time = _wall_time("windowEnd", end)
    if start_time is None and end_time is not None:
        raise FieldError("windowStart", "is required when windowEnd is set")
    if end_time is None and start_time is not None:
        raise FieldError("windowEnd", "is required when windowStart is set")
    return start_time, end_time


def _wall_time(field: str, value: object) -> time | None:
    if blank(value):
        return None
    text = value.strip() if isinstance(value, str) else ""
    match = _WALL_TIME.fullmatch(text) if len(text) <= 5 else None
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise FieldError(field, "must be a time HH:MM, 00:00 to 23:59")
    return time(int(match[1]), int(match[2]))


def parse_time_zone(value: object) -> str | None:
    """An IANA zone name (Europe/Berlin); the database's own spelling is kept, whatever the
    case the admin typed."""
    if blank(value):
        return None
    name = _zone_names().get(value.strip().lower()) if isinstance(value, str) else None
    if name is None:
        raise FieldError("timeZone", "must be an IANA time zone name such as Europe/Berlin")
    return name


def valid_zone_name(name: str) -> bool:
    """A name the zone database knows as it is spelled (stored values are checked again)."""
    return bool(_ZONE_NAME.fullmatch(name)) and _zone_names().get(name.lower()) == name


@functools.cache
def _zone_names() -> dict[str, str]:
    return {
        name.lower(): name
        for name in zoneinfo.available_timezones()
        if name not in _NOT_ZONES and _ZONE_NAME.fullmatch(name)
    }


def parse_start_at(value: object) -> datetime | None:
    """ISO 8601 date-time with an offset ("2027-03-14T09:00:00-04:00", "...Z"), or epoch
    milliseconds as a number or digits (how HubSpot sends date-time properties)."""
    field = "startAt"
    if blank(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and ASCII_INTEGER.fullmatch(value.strip()):
        value = value.strip()
    if isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdigit()):
        millis = bigint(value)
        if millis is None or millis > _MAX_EPOCH_MS:
            raise FieldError(field, "epoch milliseconds must be between 0 and year 9999")
        return _EPOCH + timedelta(milliseconds=millis)
    if not isinstance(value, str) or len(value.strip()) > _MAX_TEXT:
        raise FieldError(field, "must be an ISO 8601 date-time with an offset or epoch ms")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise FieldError(
            field, "must be an ISO 8601 date-time with an offset or epoch ms"
        ) from None
    if moment.tzinfo is None:
        raise FieldError(field, "must include a UTC offset (Z or +HH:MM)")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 has no UTC instant
        raise FieldError(field, "is out of range") from None


# A shared queue's name: letters (any script), digits, space, _ . - ; 1 to 64 of them.
_QUEUE_NAME = re.compile(r"[\w .\-]{1,64}")
MAX_PRIORITY = 9


def parse_priority(value: object) -> int:
    """0-9, higher first; absent: 0."""
    if blank(value):
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    number = bigint(value)
    if number is None or number > MAX_PRIORITY:
        raise FieldError("priority", f"must be an integer from 0 to {MAX_PRIORITY}")
    return number


def parse_queue_name(value: object) -> str | None:
    """A portal-wide queue's name (surrounding spaces are not part of it); absent: None."""
    if blank(value):
        return None
    name = value.strip() if isinstance(value, str) else ""
    if len(name) > 64 or not _QUEUE_NAME.fullmatch(name):
        raise FieldError("queueName", "must be 1-64 letters, digits, spaces or _ . -")
    return name
