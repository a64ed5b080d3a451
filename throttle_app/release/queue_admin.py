"""Operators' view of the queues and their controls: status, pause, resume, drain.

Status is read straight from PostgreSQL (the source of truth). Pause stops releases at the next
claim (claimed rows finish); resume and drain wake the queue's release job.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.orm import Session

from throttle_app.input_fields import ASCII_INTEGER
from throttle_app.release.claims import effective_rate
from throttle_app.release.policy import ReleasePolicy, describe, zone_for
from throttle_app.release.policy_fields import DAY_NAMES
from throttle_app.release.policy_store import PolicyColumns, from_columns, policy_select
from throttle_app.release.risk import Outlook
from throttle_app.release.schedule import ReleaseSchedule

# Every queue with its backlog. The backlog is counted in one pass over the live index alone
# (models.py; an index-only scan: no heap read per live row) and joined to the queues, with one
# primary-key lookup per queue holding pending rows for its oldest one (the lowest id: within a
# queue, older rows expire first): its arrival and the hold that ends first. So the listing
# reads the live index once, the queues once and one row per busy queue, whatever the number
# of terminal rows or idle queues. WITH_BACKLOG lists only the queues that hold something (the
# scrape's and the cleaner's expiry risk, release/risk_scan.py).
_STATUS_SQL = f"""
    SELECT q.id, q.queue_key, q.portal_id, q.max_throughput, q.period_seconds,
           c.max_throughput AS override_max, c.time_period AS override_time,
           c.time_unit AS override_unit, q.next_release_at, q.window_budget, q.paused, q.draining,
           t.disconnected_at, t.id IS NULL AS not_installed,
           coalesce(b.pending, 0) AS pending, coalesce(b.claimed, 0) AS claimed,
           o.hold_expires_at AS oldest_hold_expiry, q.queue_name, {policy_select("q")},
           t.time_zone AS portal_zone, o.created_at AS oldest_pending_since
    FROM throttle_queues q
    LEFT JOIN throttle_configs c ON c.portal_id = q.portal_id AND c.action_id = q.action_id
    LEFT JOIN oauth_tokens t ON t.portal_id = q.portal_id
    {{join}} JOIN (
        SELECT e.queue_id,
               count(*) FILTER (WHERE e.state = 'pending') AS pending,
               count(*) FILTER (WHERE e.state = 'claimed') AS claimed,
               min(e.id) FILTER (WHERE e.state = 'pending') AS oldest_pending_id
        FROM action_executions e
        WHERE e.state IN ('pending', 'claimed')
        GROUP BY e.queue_id) b ON b.queue_id = q.id
    LEFT JOIN action_executions o ON o.id = b.oldest_pending_id
    ORDER BY q.id
    """  # nosec B608 # module constants only
_STATUS = text(_STATUS_SQL.format(join="LEFT"))
_WITH_BACKLOG = text(_STATUS_SQL.format(join=""))

# The latest failure reason among the pending executions a release claims first (so the ones
# being retried), at most FAILURE_SCAN of them per queue in the live index's order: bounded
# whatever the backlog.
FAILURE_SCAN = 100
_LAST_FAILURES = text(
    """
    SELECT q.id, f.last_failure_reason FROM unnest(CAST(:ids AS bigint[])) AS q(id)
    CROSS JOIN LATERAL (
        SELECT x.last_failure_reason FROM (
            SELECT e.last_failure_reason, e.updated_at FROM action_executions e
            WHERE e.queue_id = q.id AND e.state = 'pending'
            LIMIT :scan) x
        WHERE x.last_failure_reason IS NOT NULL
        ORDER BY x.updated_at DESC LIMIT 1) f
    """
)


class UnknownQueue(LookupError):
    """No queue has that id or key."""


@dataclass(frozen=True)
class QueueStatus:
    id: int
    queue_key: str
    portal_id: int
    rate: str
    overridden: bool
    pending: int
    claimed: int
    next_release_at: datetime | None
    window_budget: int
    paused: bool
    draining: bool
    portal_connected: bool
    oldest_hold_expiry: datetime | None  # the oldest pending execution's hold end
    queue_name: str | None  # a named queue, shared by the portal's workflows naming it
    policy: str  # one line: rate, mode, days, window, start, zone (policy.describe)
    release_policy: ReleasePolicy
    # The effective rate as numbers (N per T seconds), the portal, the oldest pending execution.
    max_throughput: int = 0
    period_seconds: int = 0
    portal_installed: bool = False
    time_zone: str | None = None  # the portal's IANA zone (None: not known, so UTC)
    oldest_pending_since: datetime | None = None  # the oldest pending execution's arrival

    @property
    def backlog(self) -> int:
        return self.pending + self.claimed

    def outlook(self) -> Outlook:
        """What this queue's expiry risk depends on (release/risk.py)."""
        return Outlook(
            policy=self.release_policy,
            zone=zone_for(self.release_policy, self.time_zone),
            max_throughput=self.max_throughput,
            period_seconds=self.period_seconds,
            backlog=self.backlog,
            oldest_hold_expiry=self.oldest_hold_expiry,
            next_release_at=self.next_release_at,
            releasing=self.portal_connected,  # a paused queue: as if resumed now (risk.py)
            draining=self.draining,
        )

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        data["release_policy"] = policy_json(self.release_policy)
        return data


def policy_json(policy: ReleasePolicy) -> dict[str, Any]:
    """The policy with the input fields' names and forms."""
    return {
        "mode": policy.mode,
        "releaseDays": (
            ",".join(DAY_NAMES[day - 1] for day in sorted(policy.days)) if policy.days else None
        ),
        "windowStart": f"{policy.window_start:%H:%M}" if policy.window_start else None,
        "windowEnd": f"{policy.window_end:%H:%M}" if policy.window_end else None,
        "timeZone": policy.time_zone,
        "startAt": policy.start_at.isoformat() if policy.start_at else None,
    }


def queue_statuses(session: Session, with_backlog_only: bool = False) -> list[QueueStatus]:
    """Every queue (or only those holding executions), by id. One statement; each row is
    unpacked by position and the rate comes from a cache (a named read of a result row costs
    about a microsecond, and with 10,000 queues the names and the rate arithmetic cost more
    than the statement)."""
    statement = _WITH_BACKLOG if with_backlog_only else _STATUS
    statuses = [_status(*row) for row in session.execute(statement)]
    session.rollback()
    return statuses


def last_failures(session: Session, queue_ids: list[int]) -> dict[int, str]:
    """The latest failure reason of each queue that has one among its FAILURE_SCAN oldest
    pending executions (a page's worth of queues: one probe of the live index each)."""
    rows = session.execute(_LAST_FAILURES, {"ids": queue_ids, "scan": FAILURE_SCAN})
    found = {queue_id: reason for queue_id, reason in rows}
    session.rollback()
    return found


class _Rate(NamedTuple):
    """The columns effective_rate reads."""

    max_throughput: int
    period_seconds: int
    override_max: int | None
    override_time: int | None
    override_unit: str | None


@functools.lru_cache(maxsize=1024)
def _rate_of(rate: _Rate) -> tuple[int, int, str]:
    count, seconds = effective_rate(rate)
    return count, seconds, f"{count} per {seconds}s"


@functools.lru_cache(maxsize=1024)
def _policy(columns: PolicyColumns) -> ReleasePolicy:
    return from_columns(*columns)


@functools.lru_cache(maxsize=1024)
def _policy_text(rate: _Rate, policy: ReleasePolicy, portal_zone: str | None) -> str:
    return describe(policy, *effective_rate(rate), portal_zone)


def _status(
    queue_id,
    queue_key,
    portal_id,
    max_throughput,
    period_seconds,
    override_max,
    override_time,
    override_unit,
    next_release_at,
    window_budget,
    paused,
    draining,
    disconnected_at,
    not_installed,
    pending,
    claimed,
    oldest_hold_expiry,
    queue_name,
    *policy_and_more,
) -> QueueStatus:
    """One row of _STATUS, in its column order."""
    rate = _Rate(max_throughput, period_seconds, override_max, override_time, override_unit)
    count, seconds, rate_text = _rate_of(rate)
    policy = _policy(PolicyColumns(*policy_and_more[:6]))
    portal_zone, oldest_pending_since = policy_and_more[6:]
    return QueueStatus(
        queue_id,
        queue_key,
        portal_id,
        rate_text,
        override_max is not None,
        pending,
        claimed,
        next_release_at,
        window_budget,
        paused,
        draining,
        not not_installed and disconnected_at is None,
        oldest_hold_expiry,
        queue_name,
        _policy_text(rate, policy, portal_zone),
        policy,
        count,
        seconds,
        not not_installed,
        portal_zone,
        oldest_pending_since,
    )


def find_queue_id(session: Session, ref: str) -> int:
    """A queue by id ("12") or key ("portal:workflow:action")."""
    if ASCII_INTEGER.fullmatch(ref):  # not str.isdigit(): "²" and 30 digits pass it
        row = session.execute(text("SELECT id FROM throttle_queues WHERE id = :i"), {"i": int(ref)})
    else:
        row = session.execute(
            text("SELECT id FROM throttle_queues WHERE queue_key = :k"), {"k": ref}
        )
    found = row.scalar_one_or_none()
    if found is None:
        raise UnknownQueue(f"no queue {ref!r} (use an id or a key from `flask throttle queues`)")
    return int(found)


def set_paused(session: Session, schedule: ReleaseSchedule, queue_id: int, paused: bool) -> None:
    session.execute(
        text("UPDATE throttle_queues SET paused = :p, updated_at = now() WHERE id = :i"),
        {"p": paused, "i": queue_id},
    )
    session.commit()
    if not paused:
        schedule.wake([queue_id])


def drain(session: Session, schedule: ReleaseSchedule, queue_id: int) -> None:
    """Release the whole backlog as fast as HubSpot's limit allows, ignoring the rate, then
    return to normal (the flag clears itself once the backlog is empty)."""
    session.execute(
        text(
            "UPDATE throttle_queues SET draining = true, paused = false, updated_at = now()"
            " WHERE id = :i"
        ),
        {"i": queue_id},
    )
    session.commit()
    schedule.wake([queue_id])
