"""The periodic cleaner: repairs what crashes and Redis wipes leave behind, from PostgreSQL.

- reclaims claims whose lease ran out (the worker died): the rows return to pending, and the
  queue counts their lease end as a possible send, so a redelivery never breaks the rate;
- expires executions whose HubSpot hold ran out (HubSpot has already moved them on);
- warns (one log line per queue per hour) about queues at expiry risk (risk_scan.py);
- wakes every queue that has work to do, so a lost wake-up or job (Redis wiped) costs at most
  one cleaner interval (every queue's next look in one statement and one script call per 1,000
  wake-ups, so a pass stays short with thousands of queues);
- asks HubSpot again for a few connected portals' time zones, once a day each
  (oauth/time_zones.py: at most THROTTLE_TIME_ZONE_REFRESH_BATCH per pass);
- purges terminal rows older than the retention, in batches (a separate, daily job), then the
  queues that have been empty and idle for as long (`purge_queues`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from throttle_app.models import TERMINAL_STATES
from throttle_app.oauth.time_zones import PortalZones
from throttle_app.release import claims, next_look
from throttle_app.release.rates import MAX_WINDOW_SECONDS
from throttle_app.release.risk_scan import warn_at_risk
from throttle_app.release.schedule import ReleaseSchedule

log = logging.getLogger(__name__)

_RECLAIM = text(
    """
    WITH expired AS (
        SELECT id, queue_id, lease_expires_at FROM action_executions
        WHERE state = 'claimed' AND lease_expires_at <= clock_timestamp()
        FOR UPDATE SKIP LOCKED),
    returned AS (
        UPDATE action_executions e SET state = 'pending', lease_owner = NULL,
               lease_expires_at = NULL, updated_at = now()
        FROM expired x WHERE e.id = x.id
        RETURNING x.queue_id, x.lease_expires_at)
    UPDATE throttle_queues q SET last_sent_at = GREATEST(q.last_sent_at, r.lease_end)
    FROM (SELECT queue_id, max(lease_expires_at) AS lease_end, count(*) AS n
          FROM returned GROUP BY queue_id) r
    WHERE q.id = r.queue_id
    RETURNING q.id, r.n
    """
)

# Within a queue and priority, older executions expire first (one hold duration for all), so
# looking at the oldest pending rows of each queue and priority through the live index
# (queue_id, state, priority DESC, id) finds the expired ones. The outer
# `state = 'pending'` is re-checked on the row's latest version when a release claimed it
# after this statement's snapshot: a claimed row is about to be sent and must not also expire.
# The ids are collected once (ARRAY(...) is an init plan) and then updated through the primary
# key, whatever the planner believes about the number of pending rows: a semi-join would let
# stale statistics (few pending rows when the table was last analyzed) re-run the per-queue scan
# for every pending row.
_EXPIRE = text(
    """
    UPDATE action_executions SET state = 'expired', finished_at = clock_timestamp(),
           updated_at = now(),
           last_failure_reason = coalesce(last_failure_reason || '; ', '')
             || 'HubSpot hold expired before release'
    WHERE state = 'pending' AND id = ANY(ARRAY(
        SELECT e.id FROM throttle_queues q
        CROSS JOIN generate_series(0, 9) AS p(priority)
        CROSS JOIN LATERAL (
            SELECT id, hold_expires_at FROM action_executions
            WHERE queue_id = q.id AND state = 'pending' AND priority = p.priority
            ORDER BY id LIMIT :limit) e
        WHERE e.hold_expires_at <= clock_timestamp()))
    """
)

_QUEUES_WITH_WORK = text(
    """
    SELECT q.id FROM throttle_queues q
    WHERE NOT q.paused
      AND EXISTS (SELECT 1 FROM action_executions e
                  WHERE e.queue_id = q.id AND e.state = 'pending')
      AND EXISTS (SELECT 1 FROM oauth_tokens t
                  WHERE t.portal_id = q.portal_id AND t.disconnected_at IS NULL)
    ORDER BY q.id
    """
)


@dataclass
class CleanReport:
    reclaimed: int = 0
    expired: int = 0
    woken: int = 0
    at_risk: int | None = None  # None: the risk scan failed (logged)
    time_zones_asked: int = 0


def clean(
    session: Session,
    schedule: ReleaseSchedule,
    lead: timedelta,
    expire_scan: int = 1000,
    now: datetime | None = None,
    zones: PortalZones | None = None,
) -> CleanReport:
    """One cleaner pass at `now` (default: the current time; it only dates the risk scan).
    Each step commits on its own; the time zone asks (with `zones`) come last, with no
    transaction open, so a slow HubSpot delays nothing else."""
    report = CleanReport()
    for queue_id, count in session.execute(_RECLAIM).all():
        session.execute(claims.RECOMPUTE_NEXT_RELEASE, {"queue_id": queue_id})
        report.reclaimed += count
        log.warning("queue %s: %s executions came back from an expired lease", queue_id, count)
    session.commit()
    report.expired = session.execute(_EXPIRE, {"limit": expire_scan}).rowcount
    session.commit()
    with_work = [queue_id for (queue_id,) in session.execute(_QUEUES_WITH_WORK).all()]
    delays = next_look.next_looks(session, with_work, lead)
    schedule.wake_each(delays)
    report.woken = len(delays)
    try:
        report.at_risk = warn_at_risk(session, schedule.connection, now or datetime.now(UTC))
    except Exception as exc:  # a warning must never stop the repairs above from repeating
        session.rollback()
        log.warning("cleaner: expiry risk scan failed: %s: %s", type(exc).__name__, exc)
    session.commit()
    if zones is not None:
        report.time_zones_asked = zones.refresh_due()
    return report


_PURGE_CUTOFF = text("SELECT now() - make_interval(secs => :keep)")

# The oldest terminal rows first, through the finished_at index: the cutoff is a bound value
# (not clock_timestamp(), which no index condition can use), and each batch starts where the
# previous one ended (`after`), so no batch walks the index entries its predecessors left dead
# and every batch, the last one included, reads only the rows it deletes. The rows are deleted
# by their tuple ids, read in the same statement (a TID scan, no primary-key lookups; terminal
# rows are never updated, and a row that were would no longer match its old tuple id).
_PURGE_BATCH = text(
    """
    WITH gone AS (
        DELETE FROM action_executions WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM action_executions
            WHERE finished_at >= :after AND finished_at < :cutoff AND state = ANY(:terminal)
            ORDER BY finished_at LIMIT :batch))
        RETURNING finished_at)
    SELECT count(*), max(finished_at) FROM gone
    """
)


def purge(session: Session, retention: timedelta, batch_size: int) -> int:
    """Delete terminal executions finished longer ago than `retention` (from the start of the
    purge), oldest first, batch by batch, each batch its own transaction."""
    cutoff = session.execute(_PURGE_CUTOFF, {"keep": retention.total_seconds()}).scalar_one()
    session.commit()
    total, after = 0, None
    while True:
        deleted, after = purge_batch(session, cutoff, batch_size, after)
        total += deleted
        if deleted < batch_size:
            return total


def purge_batch(
    session: Session, cutoff: datetime, batch_size: int, after: datetime | None = None
) -> tuple[int, datetime | None]:
    """Delete up to `batch_size` of the oldest terminal executions finished before `cutoff`
    (and not before `after`, where the previous batch ended). Commits. Returns how many were
    deleted and where the next batch starts."""
    deleted, last = session.execute(
        _PURGE_BATCH,
        {
            "after": after or datetime.min.replace(tzinfo=UTC),
            "cutoff": cutoff,
            "batch": batch_size,
            "terminal": list(TERMINAL_STATES),
        },
    ).one()
    session.commit()
    return deleted, last or after


# Queue purge. A queue row holds its rate and window state, so only a queue whose state no longer
# matters goes: not paused or draining (an operator's decision is kept), nothing created,
# updated, opened or sent for `idle` (the retention), no window still running (next_release_at
# passed) and no send within the longest window (28 days), so a queue created anew for the same
# key (a new id, an empty window: it behaves as new) cannot add a second window's sends within T
# of the old one's. And empty: no execution at all (terminal rows are kept for the retention, so
# "no rows" also means nothing finished within it; the executions' purge runs first).
_QUIET = """NOT q.paused AND NOT q.draining
      AND q.created_at < now() - make_interval(secs => :idle)
      AND q.updated_at < now() - make_interval(secs => :idle)
      AND (q.window_opens_at IS NULL OR q.window_opens_at < now() - make_interval(secs => :idle))
      AND (q.next_release_at IS NULL OR q.next_release_at < now())
      AND (q.last_sent_at IS NULL OR q.last_sent_at < now() - make_interval(secs => :idle)
           AND q.last_sent_at < now() - make_interval(secs => :window))
      AND NOT EXISTS (SELECT 1 FROM action_executions e
                      WHERE e.queue_id = q.id AND e.state = 'pending')
      AND NOT EXISTS (SELECT 1 FROM action_executions e
                      WHERE e.queue_id = q.id AND e.state = 'claimed')"""

# Quiet queues without live executions (throttle_queues, and the index of live rows).
_QUIET_QUEUES = text(f"SELECT q.id FROM throttle_queues q WHERE {_QUIET} ORDER BY q.id")  # noqa: S608  # nosec B608 # constants

# Which of them have no execution at all. action_executions has no index on queue_id alone (a
# write on the hot path for a daily question), so this reads the table once, for every
# candidate at once (`= ANY` of an array is hashed), under its own statement timeout.
_WITHOUT_EXECUTIONS = text(
    """
    SELECT id FROM unnest(CAST(:ids AS bigint[])) AS c(id)
    EXCEPT
    SELECT queue_id FROM action_executions WHERE queue_id = ANY(CAST(:ids AS bigint[]))
    """
)
SCAN_TIMEOUT_MS = 30 * 60 * 1000

# Delete under a row lock. FOR UPDATE conflicts with the FOR KEY SHARE that admission's insert
# takes on the queue of every execution it writes (intake/admission.py), so:
# - an insert holding that lock (in flight) makes the row skipped (SKIP LOCKED);
# - an insert that comes later waits for this transaction, then finds the row gone, writes
#   nothing for it and creates the queue anew;
# - an insert that committed before the lock is seen by the DELETE (a statement of its own, so
#   a snapshot taken after the lock): its row is live, or finished since the scan began
#   (finished_at, through its index), or it was sent (the queue's last_sent_at moved).
_LOCK = text(
    "SELECT id FROM throttle_queues WHERE id = ANY(CAST(:ids AS bigint[]))"
    " ORDER BY id FOR UPDATE SKIP LOCKED"
)
_DELETE_QUIET_EMPTY = text(
    f"""
    DELETE FROM throttle_queues q
    WHERE q.id = ANY(CAST(:ids AS bigint[])) AND {_QUIET}
      AND NOT EXISTS (SELECT 1 FROM action_executions e
                      WHERE e.queue_id = q.id AND e.finished_at >= :finished_since)
    RETURNING q.id
    """  # noqa: S608  # nosec B608 # module constants only, like the statement above
)
# A row that became terminal in a transaction still open when the scan began has a finished_at
# a little before the scan: statements are bounded by the statement timeout (10 s by default).
FINISHED_MARGIN = timedelta(minutes=10)


def purge_queues(session: Session, idle: timedelta, batch_size: int) -> int:
    """Delete the queues that have been empty and idle for `idle` (see _QUIET), at most
    `batch_size` per transaction; return how many. Safe while admissions run (see _LOCK)."""
    params = {"idle": idle.total_seconds(), "window": MAX_WINDOW_SECONDS}
    scan_began = session.execute(text("SELECT clock_timestamp()")).scalar_one()
    quiet = [queue_id for (queue_id,) in session.execute(_QUIET_QUEUES, params)]
    session.rollback()
    if not quiet:
        return 0
    session.execute(text(f"SET LOCAL statement_timeout = {SCAN_TIMEOUT_MS}"))
    empty = sorted(queue_id for (queue_id,) in session.execute(_WITHOUT_EXECUTIONS, {"ids": quiet}))
    session.rollback()
    purged = 0
    for start in range(0, len(empty), batch_size):
        batch = {"ids": empty[start : start + batch_size]}
        locked = [queue_id for (queue_id,) in session.execute(_LOCK, batch)]
        deleted = sorted(
            queue_id
            for (queue_id,) in session.execute(
                _DELETE_QUIET_EMPTY,
                {**params, "ids": locked, "finished_since": scan_began - FINISHED_MARGIN},
            )
        )
        session.commit()
        purged += len(deleted)
        if deleted:
            log.info("purged %s idle, empty queues (ids %s...)", len(deleted), deleted[:20])
    return purged
