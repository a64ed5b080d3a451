"""ISO 8601 durations as HubSpot's `hs_expiration_duration` uses them (P4W, P7D, PT12H30M).

Only weeks, days, hours, minutes and seconds: years and months have no fixed length.
"""

from __future__ import annotations

import re
from datetime import timedelta

_WEEKS = re.compile(r"^P(\d+)W$")
_DAYS_TIME = re.compile(
    r"^P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


def parse_iso_duration(text: str) -> timedelta:
    """Parse `PnW` or `PnDTnHnMnS`; raise ValueError with a readable reason otherwise."""
    text = text.strip().upper()
    weeks = _WEEKS.match(text)
    if weeks:
        return timedelta(weeks=int(weeks.group(1)))
    match = _DAYS_TIME.match(text)
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as P4W, P7D or PT12H")
    parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    return timedelta(**parts)


def format_iso_duration(value: timedelta) -> str:
    """Format a non-negative duration in whole seconds, e.g. P27DT23H59M58S."""
    total = max(0, int(value.total_seconds()))
    if total and total % (7 * 86400) == 0:
        return f"P{total // (7 * 86400)}W"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    if not days and not time:
        return "PT0S"
    return f"P{days}D" * bool(days) + (f"T{time}" if time else "")
