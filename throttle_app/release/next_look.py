"""When to look at a queue again: the delay its next release job is scheduled with.

Read from PostgreSQL like the claim (claims.py), so a wake-up lost with Redis is found again by
the cleaner (next_looks). A queue outside its release policy has `next_release_at` at the
policy's next opening (claims.py records it), so it is woken then, not polled.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from throttle_app.release.claims import CLAIMABLE


def _next_look_sql(which: str):
    """SQL: what decides when to look at a queue again, for the queues `which` selects (q).
    Every check reads an index of live rows only (pending, claimed or both: models.py), never
    the terminal ones. The next retry is looked for only when no row is ready: then every
    pending row waits for a retry or has an expired hold, so that scan reads only those.
    `ready` is evaluated once per queue (a subquery whose output is volatile is not inlined),
    so the retry is looked for exactly when the answer says no row is ready."""
    return text(
        f"""
        SELECT q.id, q.paused, q.draining, q.window_budget, q.next_release_at,
          clock_timestamp() AS now, r.ready,
          CASE WHEN NOT r.ready THEN
            (SELECT min(e.next_attempt_at) FROM action_executions e WHERE e.queue_id = q.id
             AND e.state = 'pending' AND e.next_attempt_at > clock_timestamp()) END AS next_retry,
          EXISTS (SELECT 1 FROM action_executions e WHERE e.queue_id = q.id
                  AND e.state IN ('pending', 'claimed')) AS backlog
        FROM throttle_queues q
        CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM action_executions e
                            WHERE e.queue_id = q.id AND {CLAIMABLE}) AS ready) r
        WHERE {which}
        """  # nosec B608 # constants; `which` is one of this module's
    )


_NEXT_LOOK = _next_look_sql("q.id = :queue_id")
_NEXT_LOOKS = _next_look_sql("q.id = ANY(:queue_ids)")


def next_look(session: Session, queue_id: int, lead: timedelta) -> float | None:
    """Seconds until this queue's next release job should run (None: nothing to do until
    something wakes it: an admission, a resume, a reconnect, or the cleaner). Commits."""
    row = session.execute(_NEXT_LOOK, {"queue_id": queue_id}).one_or_none()
    if row is None or row.paused:
        session.rollback()
        return None
    if row.draining and not row.backlog:
        session.execute(
            text("UPDATE throttle_queues SET draining = false WHERE id = :queue_id"),
            {"queue_id": queue_id},
        )
    session.commit()
    return _delay(row, lead)


def next_looks(session: Session, queue_ids: list[int], lead: timedelta) -> dict[int, float]:
    """next_look for many queues in one statement (the cleaner): queue id -> seconds, for the
    queues that have something to do. Read-only: a drained queue is settled by its own job."""
    rows = session.execute(_NEXT_LOOKS, {"queue_ids": queue_ids}).all()
    session.rollback()
    delays = {row.id: None if row.paused else _delay(row, lead) for row in rows}
    return {queue_id: delay for queue_id, delay in delays.items() if delay is not None}


def _delay(row, lead: timedelta) -> float | None:
    if row.draining or row.window_budget > 0 or row.next_release_at is None:
        window = row.now
    else:
        window = max(row.now, row.next_release_at - lead)
    if row.ready:
        return (window - row.now).total_seconds()
    if row.next_retry is not None:
        return (max(window, row.next_retry) - row.now).total_seconds()
    return None
