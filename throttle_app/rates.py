"""Release rates: "N records per T", as HubSpot admins type them into the action.

`period` accepts second(s), minute(s), hour(s), day(s); the limits are the original service's:
at most 10,000 records per window and a window of at most 28 days.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
MAX_PER_WINDOW = 10_000
MAX_WINDOW_SECONDS = 28 * 86400
# An integer as HubSpot sends it in a string: ASCII digits, at most 18 (below 2**63).
ASCII_INTEGER = re.compile(r"[0-9]{1,18}")


class FieldError(ValueError):
    """One input field is invalid; `field` names it as the client sent it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Rate:
    max_throughput: int
    period_seconds: int


def positive_int(field: str, value: object) -> int:
    """A positive integer given as a JSON number or a numeric string ("50", 50, 50.0)."""
    if isinstance(value, bool):
        raise FieldError(field, "must be a positive integer")
    if isinstance(value, str):
        text = value.strip()
        if not ASCII_INTEGER.fullmatch(text):  # not isdigit(): it accepts "²", which int() refuses
            raise FieldError(field, "must be a positive integer")
        number = int(text)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise FieldError(field, "must be a positive integer")
    if number < 1:
        raise FieldError(field, "must be a positive integer")
    return number


def period_seconds(field: str, value: object) -> int:
    if not isinstance(value, str):
        raise FieldError(field, "must be one of second(s), minute(s), hour(s), day(s)")
    unit = value.strip().lower()
    unit = unit[:-1] if unit.endswith("s") else unit
    if unit not in PERIOD_SECONDS:
        raise FieldError(field, "must be one of second(s), minute(s), hour(s), day(s)")
    return PERIOD_SECONDS[unit]


def parse_rate(
    max_value: object,
    time_value: object,
    period_value: object,
    names: tuple[str, str, str] = ("maxThroughPut", "time", "period"),
) -> Rate:
    """Validate the three inputs and return the rate; raise FieldError naming the bad field."""
    max_name, time_name, period_name = names
    max_throughput = positive_int(max_name, max_value)
    if max_throughput > MAX_PER_WINDOW:
        raise FieldError(max_name, f"must be at most {MAX_PER_WINDOW}")
    count = positive_int(time_name, time_value)
    unit = period_seconds(period_name, period_value)
    if count * unit > MAX_WINDOW_SECONDS:
        raise FieldError(time_name, "window must be at most 28 days")
    return Rate(max_throughput=max_throughput, period_seconds=count * unit)
