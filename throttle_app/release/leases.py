"""A claim's lease, renewed by the job that holds it, so that it can stay short.

Claimed rows carry a lease end and an owner token (claims.py). The lease is short
(THROTTLE_LEASE_SECONDS) and the job renews it before any step it would not cover, so:

- no send starts unless the lease outlasts it: a call starts only when the bucket's inline wait,
  the HTTP timeouts and a margin (Settings.call_budget_seconds) fit in what is left of the lease,
  counted from before the statement that set it;
- a dead worker's claim holds its queue for at most one lease after its last renewal: the next
  window opens T after the end of every live lease (claims.py), and the release clock replaces
  the dead job once its watch falls due (ReleaseSchedule.watch), without waiting for the cleaner.

A renewal is fenced like every update of claimed rows (owner token, live lease), and a budgeted
claim renews only while its window is still the queue's window: a renewal that would let a send
of the old window follow the opening of a new one is refused. The renewal moves the queue's
`next_release_at` to T after the new lease end in the same transaction, under the queue row's
lock (taken after the rows', the order outcomes.py and the cleaner use), so no new window opens
while the renewed lease may still send.
"""

from __future__ import annotations

import time

from sqlalchemy import text
from sqlalchemy.orm import Session

from throttle_app.config import CALL_MARGIN_SECONDS
from throttle_app.release.claims import RECOMPUTE_NEXT_RELEASE, Claim, ClaimedRow
from throttle_app.release.schedule import ReleaseSchedule

_RENEW_ROWS = text(
    """
    UPDATE action_executions SET updated_at = now(),
           lease_expires_at = clock_timestamp() + make_interval(secs => :lease)
    WHERE id = ANY(:ids) AND lease_owner = :owner AND state = 'claimed'
      AND lease_expires_at > clock_timestamp()
    RETURNING id
    """
)

_LOCK_WINDOW = text(
    "SELECT window_opens_at FROM throttle_queues WHERE id = :queue_id FOR NO KEY UPDATE"
)


def renew(session: Session, claim: Claim, seconds: float) -> set[int]:
    """Extend the lease of the claim's rows this owner still holds to `seconds` from now; return
    their ids (empty: the lease ended, or a new window opened). Commits."""
    renewed = {
        row_id
        for (row_id,) in session.execute(
            _RENEW_ROWS,
            {"ids": [row.id for row in claim.rows], "owner": claim.owner, "lease": seconds},
        )
    }
    if not renewed:
        session.rollback()
        return set()
    opens = session.execute(_LOCK_WINDOW, {"queue_id": claim.queue_id}).scalar()
    if claim.budgeted and opens != claim.window_opens_at:
        session.rollback()
        return set()
    session.execute(RECOMPUTE_NEXT_RELEASE, {"queue_id": claim.queue_id})
    session.commit()
    return renewed


class Lease:
    """One claim's lease as this process counts it: a time.monotonic() deadline, taken before
    the statement that set the lease, so it never ends later here than in PostgreSQL."""

    def __init__(
        self, session: Session, schedule: ReleaseSchedule, claim: Claim, started: float
    ) -> None:
        """`started`: time.monotonic() before the claim (its lease counts from then)."""
        self.session = session
        self.schedule = schedule
        self.claim = claim
        self.deadline = started + claim.lease_seconds
        self.renewals = 0

    def covers(self, step_seconds: float) -> bool:
        """Whether a step of `step_seconds` that starts now surely ends before the lease."""
        return time.monotonic() + step_seconds <= self.deadline

    def ensure(self, rows: list[ClaimedRow], step_seconds: float) -> bool:
        """True when the lease covers a step of `step_seconds` on `rows` that starts now,
        renewing it (for the lease time, or the step's and a margin if that is longer) when it
        would not.
        False: the rows are no longer surely ours; nothing may be sent for them."""
        if self.covers(step_seconds):
            return True
        seconds = max(float(self.claim.lease_seconds), step_seconds + CALL_MARGIN_SECONDS)
        started = time.monotonic()
        renewed = renew(self.session, self.claim, seconds)
        if not renewed or any(row.id not in renewed for row in rows):
            return False
        self.deadline = started + seconds
        self.renewals += 1
        self.schedule.watch(self.claim.queue_id, seconds)
        return self.covers(step_seconds)
