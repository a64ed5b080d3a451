"""The periodic cleaner: repairs what crashes and Redis wipes leave behind, from PostgreSQL.

- reclaims claims whose lease ran out (the worker died): the rows return to pending, and the
  queue counts their lease end as a possible send, so a redelivery never breaks the rate;
- expires executions whose HubSpot hold ran out (HubSpot has already moved them on);
- wakes every queue that has work to do, so a lost wake-up or job (Redis wiped) costs at most
  one cleaner interval;
- purges terminal rows older than the retention, in batches (a separate, daily job).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from throttle_app.models import TERMINAL_STATES
from throttle_app.release import claims
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

# Within a queue, older executions expire first (one hold duration for all), so looking at
# each queue's oldest pending rows through the live index finds the expired ones. The outer
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
        CROSS JOIN LATERAL (
            SELECT id, hold_expires_at FROM action_executions
            WHERE queue_id = q.id AND state = 'pending' ORDER BY id LIMIT :limit) e
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


def clean(
    session: Session, schedule: ReleaseSchedule, lead: timedelta, expire_scan: int = 1000
) -> CleanReport:
    """One cleaner pass. Each step commits on its own."""
    report = CleanReport()
    for queue_id, count in session.execute(_RECLAIM).all():
        session.execute(claims.RECOMPUTE_NEXT_RELEASE, {"queue_id": queue_id})
        report.reclaimed += count
        log.warning("queue %s: %s executions came back from an expired lease", queue_id, count)
    session.commit()
    report.expired = session.execute(_EXPIRE, {"limit": expire_scan}).rowcount
    session.commit()
    with_work = [queue_id for (queue_id,) in session.execute(_QUEUES_WITH_WORK).all()]
    delays = claims.next_looks(session, with_work, lead)
    schedule.wake_each(delays)
    report.woken = len(delays)
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
