"""A queue's release policy in PostgreSQL: the throttle_queues columns it lives in, and the one
way to read it back. Nothing else parses these columns (the ops page and the queue listing read
policies through `read_queue_policy` or `from_columns`).

The policy is the one the latest admitted execution of the queue carried (intake/queue_rows.py
writes it with the rate); like the rate, a change applies from the queue's next release.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from throttle_app.oauth.time_zones import portal_time_zone
from throttle_app.release.policy import ReleasePolicy, zone_for
from throttle_app.release.policy_fields import MODES

# The columns, in this order, wherever a statement reads or writes them.
POLICY_COLUMN_NAMES = (
    "release_mode",
    "release_days",
    "window_start",
    "window_end",
    "time_zone",
    "start_at",
)


def policy_select(alias: str) -> str:
    """SQL: the policy columns of the queue row `alias`, in order."""
    return ", ".join(f"{alias}.{name}" for name in POLICY_COLUMN_NAMES)


class PolicyColumns(NamedTuple):
    """A policy as stored: days are a bitmask (bit d-1 for ISO weekday d; NULL = every day)."""

    release_mode: str
    release_days: int | None
    window_start: time | None
    window_end: time | None
    time_zone: str | None
    start_at: datetime | None


DEFAULT_COLUMNS = PolicyColumns("burst", None, None, None, None, None)


def to_columns(policy: ReleasePolicy) -> PolicyColumns:
    days = None if policy.days is None else sum(1 << (day - 1) for day in policy.days)
    return PolicyColumns(
        policy.mode,
        days,
        policy.window_start,
        policy.window_end,
        policy.time_zone,
        policy.start_at,
    )


def from_columns(
    release_mode: str | None,
    release_days: int | None,
    window_start: time | None,
    window_end: time | None,
    time_zone: str | None,
    start_at: datetime | None,
) -> ReleasePolicy:
    """The stored policy. A value the constraints should have kept out reads as no restriction
    of that kind rather than an error: a queue is never stopped by a column it cannot read."""
    days = None
    if release_days is not None and 0 < release_days < 128:
        days = frozenset(day for day in range(1, 8) if release_days & (1 << (day - 1)))
    if window_start is None or window_end is None:
        window_start = window_end = None
    if start_at is not None and start_at.tzinfo is None:
        start_at = None
    return ReleasePolicy(
        mode=release_mode if release_mode in MODES else "burst",
        days=days,
        window_start=window_start,
        window_end=window_end,
        time_zone=time_zone,
        start_at=start_at,
    )


@dataclass(frozen=True)
class QueuePolicy:
    """A queue's policy with the zone it is read in (its own, else the portal's, else UTC)."""

    policy: ReleasePolicy
    portal_zone: str | None
    zone: ZoneInfo


_READ = text(
    f"""
    SELECT q.portal_id, {policy_select("q")}
    FROM throttle_queues q WHERE q.id = :queue_id
    """  # nosec B608 # module constants only
)


def read_queue_policy(session: Session, queue_id: int) -> QueuePolicy | None:
    """The queue's policy (None: no such queue). Reads in the caller's transaction."""
    row = session.execute(_READ, {"queue_id": queue_id}).one_or_none()
    if row is None:
        return None
    policy = from_columns(*row[1:])
    portal_zone = portal_time_zone(session, row.portal_id)
    return QueuePolicy(policy, portal_zone, zone_for(policy, portal_zone))


def queue_zone(session: Session, policy: ReleasePolicy, portal_id: int) -> ZoneInfo:
    """The zone `policy` is read in; the portal's zone is looked up only when it matters (a
    policy that restricts time and names no zone of its own)."""
    if not policy.restricts_time or policy.time_zone:
        return zone_for(policy, None)
    return zone_for(policy, portal_time_zone(session, portal_id))
