"""The periodic cleaner: repairs what crashes and Redis wipes leave behind, from PostgreSQL.

- reclaims claims whose lease ran out (the worker died): the rows return to pending, and the
  queue counts their lease end as a possible send, so a redelivery never breaks the rate;
- expires executions whose HubSpot hold ran out (HubSpot has already moved them on);
- wakes every queue that has work to do, so a lost wake-up or job (Redis wiped) costs at most
  one cleaner interval (every queue's next look in one statement and one script call per 1,000
  wake-ups, so a pass stays short with thousands of queues);
- purges terminal rows older than the retention, in batches (a separate, daily job).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

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
# each queue's oldest pending rows through the pending index finds the expired ones. The outer
# `state = 'pending'` is re-checked on the row's latest version when a release claimed it
# after this statement's snapshot: a claimed row is about to be sent and must not also expire.
_EXPIRE = text(
    """
    UPDATE action_executions SET state = 'expired', finished_at = clock_timestamp(),
           updated_at = now(),
           last_failure_reason = coalesce(last_failure_reason || '; ', '')
             || 'HubSpot hold expired before release'
    WHERE state = 'pending' AND id IN (
        SELECT e.id FROM throttle_queues q
        CROSS JOIN LATERAL (
            SELECT id, hold_expires_at FROM action_executions
            WHERE queue_id = q.id AND state = 'pending' ORDER BY id LIMIT :limit) e
        WHERE e.hold_expires_at <= clock_timestamp())
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


def purge(session: Session, retention: timedelta, batch_size: int) -> int:
    """Delete terminal executions finished longer ago than `retention`, batch by batch."""
    total = 0
    while True:
        deleted = session.execute(
            text(
                "DELETE FROM action_executions WHERE id IN ("
                " SELECT id FROM action_executions"
                " WHERE finished_at < clock_timestamp() - make_interval(secs => :keep)"
                " AND state = ANY(:terminal) LIMIT :batch)"
            ),
            {
                "keep": retention.total_seconds(),
                "batch": batch_size,
                "terminal": list(TERMINAL_STATES),
            },
        ).rowcount
        session.commit()
        total += deleted
        if deleted < batch_size:
            return total
