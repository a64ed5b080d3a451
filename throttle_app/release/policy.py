"""Release policies: when a queue may release (days, a daily window, a start time, in a time
zone) and how (burst or spread). Pure: no database, no Redis, no Flask; every function takes the
instant it reasons about, so tests move time by passing another instant.

Allowed time is a union of spans. With a window, each allowed local day D has the span from D's
`window_start` to `window_end` (on D, or on D+1 when `window_end <= window_start`: a window
past midnight belongs to the day it starts). With days and no window, the span is the whole
local day. Wall times become instants by local_time.first_instant (skipped or repeated times on
daylight-saving days). `start_at` cuts away everything before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from throttle_app.release.local_time import first_instant, local_date
from throttle_app.release.policy_fields import (
    DAY_NAMES,
    MODES,
    parse_days,
    parse_mode,
    parse_start_at,
    parse_time_zone,
    parse_window,
    valid_zone_name,
)

# Spans are looked for this many local days ahead: a listed day is at most 7 away, and a day a
# zone skipped (Samoa, 2011-12-30) leaves one more without a span.
_LOOKAHEAD_DAYS = 16
# release_eta walks span by span; past this many spans it extrapolates (10 years of daily spans).
_MAX_SPANS = 3660


@dataclass(frozen=True)
class ReleasePolicy:
    mode: str = "burst"  # "burst" | "spread"
    days: frozenset[int] | None = None  # ISO weekdays 1=Mon..7=Sun; None = every day
    window_start: time | None = None  # both or neither; end <= start: past midnight
    window_end: time | None = None
    time_zone: str | None = None  # IANA name; None = the portal's zone
    start_at: datetime | None = None  # aware; nothing released before it

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if (self.window_start is None) != (self.window_end is None):
            raise ValueError("window_start and window_end go together")
        if self.days is not None and (not self.days or not self.days <= set(range(1, 8))):
            raise ValueError("days must be a non-empty set of ISO weekdays 1..7")
        if self.start_at is not None and self.start_at.tzinfo is None:
            raise ValueError("start_at must be aware")

    @property
    def restricts_time(self) -> bool:
        """Any of days / window / start_at set: releasing depends on the instant."""
        return self.days is not None or self.window_start is not None or self.start_at is not None


def parse_policy(fields: Mapping[str, object]) -> ReleasePolicy:
    """The execution request's inputFields -> policy; raises input_fields.FieldError(field, msg).
    Absent, null or blank fields keep today's behaviour (burst, any day, any time)."""
    window_start, window_end = parse_window(fields.get("windowStart"), fields.get("windowEnd"))
    return ReleasePolicy(
        mode=parse_mode(fields.get("mode")),
        days=parse_days(fields.get("releaseDays")),
        window_start=window_start,
        window_end=window_end,
        time_zone=parse_time_zone(fields.get("timeZone")),
        start_at=parse_start_at(fields.get("startAt")),
    )


def zone_for(policy: ReleasePolicy, portal_zone: str | None) -> ZoneInfo:
    """The policy's own zone, else the portal's, else UTC (also for a name that is not a zone:
    a stored value is never trusted to be loadable)."""
    for name in (policy.time_zone, portal_zone):
        if name and valid_zone_name(name):
            return ZoneInfo(name)
    return ZoneInfo("UTC")


def next_open(policy: ReleasePolicy, zone: ZoneInfo, instant: datetime) -> datetime | None:
    """Earliest t >= instant at which releasing is allowed (instant itself when open);
    None: never again (cannot happen for valid policies, kept for safety)."""
    if policy.start_at is not None and policy.start_at > instant:
        instant = policy.start_at
    if policy.days is None and policy.window_start is None:
        return instant
    for start, end in _spans(policy, zone, instant):
        if end > instant:
            return max(start, instant)
    return None


def open_until(policy: ReleasePolicy, zone: ZoneInfo, instant: datetime) -> datetime | None:
    """End of the allowed span that contains `instant` (None: it never closes). Spans that touch
    (MON and TUE without a window) count as one. When `instant` is not open, `instant` itself:
    nothing is allowed from it."""
    if next_open(policy, zone, instant) != instant:
        return instant
    if policy.days is None and policy.window_start is None:
        return None
    until: datetime | None = None
    for count, (start, end) in enumerate(_spans(policy, zone, instant)):
        if end <= instant:
            continue
        if until is not None and start > until:
            return until
        until = end
        if count > 9:  # eight days of touching spans: every day, all day, forever
            return None
    return until


def release_eta(
    policy: ReleasePolicy,
    zone: ZoneInfo,
    max_throughput: int,
    period_seconds: int,
    backlog: int,
    now: datetime,
    next_release_at: datetime | None = None,
) -> datetime | None:
    """When the `backlog`-th pending record would be released at this rate and policy
    (windows, days, start time, spread spacing), starting no earlier than now /
    next_release_at. None when backlog == 0.

    Burst releases up to N every T from the first open moment; spread releases one every T/N.
    A release is started only while open, so each span takes ceil(length / step) releases and
    the next one waits for the next opening. Past 3,660 spans the rest is extrapolated."""
    if backlog <= 0:
        return None
    per_step, divisor = (1, max_throughput) if policy.mode == "spread" else (max_throughput, 1)
    period = timedelta(seconds=period_seconds)  # a release every period / divisor

    def after(steps: int) -> timedelta:  # exact to the microsecond, however many steps
        return period * steps / divisor

    steps_left = math.ceil(backlog / per_step) - 1
    begin = max(now, next_release_at) if next_release_at is not None else now
    at = next_open(policy, zone, begin)
    walked, spans = 0, 0
    while at is not None:
        until = open_until(policy, zone, at)
        if until is None:
            return at + after(steps_left)
        # releases at at, at + step, ... while before `until`
        in_span = max(1, -(-((until - at) * divisor) // period))
        if steps_left < in_span:
            return at + after(steps_left)
        steps_left -= in_span
        walked += in_span
        spans += 1
        following = next_open(policy, zone, at + after(in_span))
        if spans >= _MAX_SPANS and following is not None:
            per_second = walked / max((following - begin).total_seconds(), 1.0)
            return following + timedelta(seconds=steps_left / per_second)
        at = following
    return None


def describe(
    policy: ReleasePolicy,
    max_throughput: int,
    period_seconds: int,
    portal_zone: str | None = None,
) -> str:
    """One readable line: "10 per 1 s, spread, MON-FRI 09:00-17:00 America/New_York"."""
    parts = [f"{max_throughput} per {_duration(period_seconds)}"]
    if policy.mode != "burst":
        parts.append(policy.mode)
    if policy.restricts_time:
        zone = zone_for(policy, portal_zone)
        when = []
        if policy.days is not None:
            when.append(_days_text(policy.days))
        if policy.window_start is not None and policy.window_end is not None:
            when.append(f"{policy.window_start:%H:%M}-{policy.window_end:%H:%M}")
        if policy.start_at is not None:
            when.append(f"from {policy.start_at.astimezone(zone):%Y-%m-%d %H:%M}")
        when.append(zone.key if policy.time_zone or portal_zone else "UTC")
        parts.append(" ".join(when))
    return ", ".join(parts)


def _spans(
    policy: ReleasePolicy, zone: ZoneInfo, instant: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """The allowed spans (UTC start, UTC end), in order, from the one that may contain `instant`
    (it started the local day before at the latest) over the next _LOOKAHEAD_DAYS days. Empty
    spans (a window wholly inside a skipped hour) are left out."""
    first_day = local_date(zone, instant) - timedelta(days=1)
    for offset in range(_LOOKAHEAD_DAYS):
        day = first_day + timedelta(days=offset)
        if policy.days is not None and day.isoweekday() not in policy.days:
            continue
        start, end = _span(policy, zone, day)
        if end > start:
            yield start, end


def _span(policy: ReleasePolicy, zone: ZoneInfo, day: date) -> tuple[datetime, datetime]:
    if policy.window_start is None or policy.window_end is None:
        return (
            first_instant(zone, day, time(0)),
            first_instant(zone, day + timedelta(days=1), time(0)),
        )
    end_day = day + timedelta(days=1) if policy.window_end <= policy.window_start else day
    return (
        first_instant(zone, day, policy.window_start),
        first_instant(zone, end_day, policy.window_end),
    )


def _days_text(days: frozenset[int]) -> str:
    """MON-FRI for runs of three or more days, MON,WED otherwise."""
    ordered, runs = sorted(days), []
    run = [ordered[0]]
    for day in ordered[1:]:
        if day == run[-1] + 1:
            run.append(day)
        else:
            runs.append(run)
            run = [day]
    runs.append(run)
    texts = []
    for run in runs:
        names = [DAY_NAMES[day - 1] for day in run]
        texts.append(f"{names[0]}-{names[-1]}" if len(run) >= 3 else ",".join(names))
    return ",".join(texts)


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
