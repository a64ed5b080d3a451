"""Release rates: "N records per T", as HubSpot admins type them into the action.

`period` accepts second(s), minute(s), hour(s), day(s); the limits are the original service's:
at most 10,000 records per window and a window of at most 28 days.
"""

from __future__ import annotations

from dataclasses import dataclass

from throttle_app.input_fields import FieldError, positive_int

PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
MAX_PER_WINDOW = 10_000
MAX_WINDOW_SECONDS = 28 * 86400


@dataclass(frozen=True)
class Rate:
    max_throughput: int
    period_seconds: int


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
) -> Rate:
    """Validate the action's three inputs and return the rate; raise FieldError naming the bad
    field as HubSpot sends it."""
    max_name, time_name, period_name = "maxThroughPut", "time", "period"
    max_throughput = positive_int(max_name, max_value)
    if max_throughput > MAX_PER_WINDOW:
        raise FieldError(max_name, f"must be at most {MAX_PER_WINDOW}")
    count = positive_int(time_name, time_value)
    unit = period_seconds(period_name, period_value)
    if count * unit > MAX_WINDOW_SECONDS:
        raise FieldError(time_name, "window must be at most 28 days")
    return Rate(max_throughput=max_throughput, period_seconds=count * unit)
