"""Which queues are at risk now (release/risk.py over the queue listing), and the cleaner's
warning: one log line per queue at risk per hour, rate-limited through Redis.

Reads only the queues that hold executions (queue_admin.queue_statuses, with_backlog_only):
the live rows once, one live-index probe per such queue, no terminal row.
"""

from __future__ import annotations

import logging
from datetime import datetime

import redis
from sqlalchemy.orm import Session

from throttle_app.release import queue_admin
from throttle_app.release.queue_admin import QueueStatus
from throttle_app.release.risk import Risk, assess

log = logging.getLogger(__name__)
WARNED_KEY = "throttle:risk_warned:%d"
WARN_EVERY_SECONDS = 3600


def queues_at_risk(session: Session, now: datetime) -> list[tuple[QueueStatus, Risk]]:
    """The queues at risk at `now`, by id, each with its outlook."""
    found = []
    for status in queue_admin.queue_statuses(session, with_backlog_only=True):
        risk = assess(status.outlook(), now)
        if risk.at_risk:
            found.append((status, risk))
    return found


def warn_at_risk(session: Session, connection: redis.Redis, now: datetime) -> int:
    """Log one warning per queue at risk, at most once per WARN_EVERY_SECONDS per queue (a
    Redis key set with NX and an expiry: several cleaners agree). Returns how many queues are at
    risk (warned now or within the hour)."""
    risky = queues_at_risk(session, now)
    if not risky:
        return 0
    pipe = connection.pipeline(transaction=False)
    for status, _ in risky:
        pipe.set(WARNED_KEY % status.id, "1", nx=True, ex=WARN_EVERY_SECONDS)
    for (status, risk), first in zip(risky, pipe.execute(), strict=True):
        if first:
            log.warning(
                "queue %s (%s) at risk: %s held, %s; the first record would expire"
                " unthrottled at %s",
                status.id,
                status.queue_key,
                status.backlog,
                f"drained by {risk.drain_eta.isoformat()}" if risk.drain_eta else "not releasing",
                risk.expires_at.isoformat() if risk.expires_at else "-",
            )
    return len(risky)
