"""Local wall-clock times to instants, across daylight-saving changes.

A release window says "09:00 local". On most days that is one instant; on a change day the wall
time may not exist (spring: the clock jumps from 02:00 to 03:00) or exist twice (autumn: 01:30
comes round twice). One rule covers every case: a wall time on a date is **the first instant at
which the local clock reads that time or later**. So a skipped 02:30 is the moment of the jump
(03:00 after it), a repeated 01:30 is its first occurrence, and the mapping never goes backwards
as the wall time grows, which keeps windows from overlapping.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def first_instant(zone: ZoneInfo, day: date, wall: time) -> datetime:
    """The first instant (UTC) at which the clock of `zone` reads `day` `wall` or later."""
    local = datetime.combine(day, wall)
    early = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    late = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if early <= late:  # the time exists: once (equal) or twice (fold=0 is the first)
        return early
    # A gap: fold=1 read it with the offset after the change (an instant before the jump), fold=0
    # with the offset before it (an instant after). The jump lies between: find it to the second.
    low, high = late, early  # local(low) < wall <= local(high)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle <= low:
            middle = low + timedelta(seconds=1)
        if _wall(middle, zone) >= local:
            high = middle
        else:
            low = middle
    return high


def local_date(zone: ZoneInfo, instant: datetime) -> date:
    """The date the clock of `zone` shows at `instant`."""
    return instant.astimezone(zone).date()


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)
