"""What happens to claimed rows after a send: completed, failed, retried, or given back.

Every update is fenced on the claim's owner token and a live lease (claims.py), so a worker
that lost its lease cannot mark rows. Each function commits. A send that reached (or may have
reached) HubSpot is recorded on the queue by the moment it *started* (`started_at`), so the next
window opens T after the start of the window's latest send (claims.py), whatever HubSpot's
answer time; a call that outlasted T is recorded by its end (`_after_send`). Until a send is
recorded its rows are claimed, and their live lease holds the next window back (claims.py), so a
send in flight is covered before its marking, and a crash between the two by the lease end (the
cleaner records it as a send).
"""

from __future__ import annotations

import time

from sqlalchemy import text
from sqlalchemy.orm import Session

from throttle_app.models import PENDING
from throttle_app.release.claims import RECOMPUTE_NEXT_RELEASE, Claim, ClaimedRow

_FENCE = (
    "id = ANY(:ids) AND lease_owner = :owner AND state = 'claimed'"
    " AND lease_expires_at > clock_timestamp()"
)


def _fenced(claim: Claim, rows: list[ClaimedRow]) -> dict:
    return {"ids": [row.id for row in rows], "owner": claim.owner}


def _after_send(
    session: Session,
    queue_id: int,
    started_at: float | None = None,
    ended_at: float | None = None,
) -> None:
    """A call reached (or may have reached) HubSpot: the next window counts from its start
    (`started_at`, a time.monotonic() reading taken once the bucket gave its token, just before
    the request was issued), else from now (later than any start: never too early).

    A call that outlasted its window's T (`ended_at`, time.monotonic() when its answer, error or
    timeout came; None: now) counts from its end instead: its request may have reached HubSpot
    as late as that (a stalled path delivers it when it recovers), and the next window must not
    join it there. Times are turned into the database's clock as clock_timestamp() minus the
    time since, measured before the statement is sent, so a stored time is never too early."""
    now = time.monotonic()
    start_ago = 0.0 if started_at is None else max(0.0, now - started_at)
    end_ago = 0.0 if ended_at is None else min(start_ago, max(0.0, now - ended_at))
    session.execute(
        text(
            "UPDATE throttle_queues SET last_sent_at = GREATEST(last_sent_at, clock_timestamp()"
            " - make_interval(secs => CASE WHEN :start_ago - :end_ago"
            "   > COALESCE(window_period_seconds, period_seconds) THEN :end_ago"
            "   ELSE :start_ago END)) WHERE id = :queue_id"
        ),
        {"queue_id": queue_id, "start_ago": start_ago, "end_ago": end_ago},
    )
    session.execute(RECOMPUTE_NEXT_RELEASE, {"queue_id": queue_id})


def mark_completed(
    session: Session,
    claim: Claim,
    rows: list[ClaimedRow],
    refused: dict[str, str],
    started_at: float | None = None,
    ended_at: float | None = None,
) -> int:
    """HubSpot took the batch: completed (or failed for the callbacks it refused). Commits.
    `started_at`, `ended_at`: time.monotonic() when the call started and when its answer came
    (None: now)."""
    done = [row for row in rows if row.callback_id not in refused]
    count = 0
    if done:
        count = session.execute(
            text(
                "UPDATE action_executions SET state = CASE WHEN outcome = 'SUCCESS'"
                " THEN 'completed' ELSE 'failed' END, finished_at = clock_timestamp(),"
                " lease_owner = NULL, lease_expires_at = NULL, updated_at = now()"
                f" WHERE {_FENCE}"  # nosec B608 # _FENCE is a module constant
            ),
            _fenced(claim, done),
        ).rowcount
    for row in rows:
        if row.callback_id in refused:
            _fail(session, claim, row, refused[row.callback_id])
    _after_send(session, claim.queue_id, started_at, ended_at)
    session.commit()
    return count


def mark_rejected(
    session: Session,
    claim: Claim,
    row: ClaimedRow,
    reason: str,
    started_at: float | None = None,
) -> None:
    """HubSpot refused this one callback: it fails with the reason. Commits.
    `started_at`: as for mark_completed."""
    _fail(session, claim, row, reason)
    _after_send(session, claim.queue_id, started_at)
    session.commit()


def _fail(session: Session, claim: Claim, row: ClaimedRow, reason: str) -> None:
    session.execute(
        text(
            "UPDATE action_executions SET state = 'failed', last_failure_reason = :reason,"
            " finished_at = clock_timestamp(), lease_owner = NULL, lease_expires_at = NULL,"
            f" updated_at = now() WHERE {_FENCE}"  # nosec B608 # _FENCE: a constant
        ),
        {**_fenced(claim, [row]), "reason": reason[:1000]},
    )


def mark_retry(
    session: Session,
    claim: Claim,
    rows: list[ClaimedRow],
    reason: str,
    max_attempts: int,
    base_seconds: float,
    max_seconds: float,
    started_at: float | None = None,
) -> None:
    """The call failed in a way that may have reached HubSpot: count an attempt and back off
    (exponential, with jitter). At the limit the next try completes with FAIL_CONTINUE; when
    that fails too, the execution fails. Commits. `started_at`: as for mark_completed."""
    session.execute(
        text(
            "UPDATE action_executions SET"
            " attempts = attempts + 1, last_failure_reason = :reason,"
            " state = CASE WHEN outcome = 'FAIL_CONTINUE' AND attempts + 1 >= :max"
            "   THEN 'failed' ELSE 'pending' END,"
            " finished_at = CASE WHEN outcome = 'FAIL_CONTINUE' AND attempts + 1 >= :max"
            "   THEN clock_timestamp() END,"
            " outcome = CASE WHEN attempts + 1 >= :max THEN 'FAIL_CONTINUE' ELSE outcome END,"
            " next_attempt_at = clock_timestamp() + make_interval(secs =>"
            "   least(:cap, :base * power(2, attempts)) * (0.5 + random() / 2)),"
            f" lease_owner = NULL, lease_expires_at = NULL, updated_at = now() WHERE {_FENCE}"  # nosec B608 # constant
        ),
        {
            **_fenced(claim, rows),
            "reason": reason[:1000],
            "max": max_attempts,
            "base": base_seconds,
            "cap": max_seconds,
        },
    )
    _after_send(session, claim.queue_id, started_at)
    session.commit()


def record_send(
    session: Session, claim: Claim, started_at: float | None, ended_at: float | None = None
) -> None:
    """A call that may have reached HubSpot failed and its rows stay claimed for a prompt retry:
    the next window counts from its start (`started_at`, time.monotonic(); None: now; from its
    end, `ended_at`, when it outlasted T) like after any send, whatever becomes of the rows
    later (a give-back records nothing). Commits."""
    _after_send(session, claim.queue_id, started_at, ended_at)
    session.commit()


def give_back(session: Session, claim: Claim, rows: list[ClaimedRow]) -> int:
    """Nothing was done (rate limited, bucket empty, lease too short, portal disconnected, no
    connection, the whole request refused): the rows return to pending without an attempt, and
    their reservation returns to the window they came from. No send is recorded, so the next
    window's earliest start stays T after the latest real send's start and after every live
    lease end."""
    returned = session.execute(
        text(
            f"UPDATE action_executions SET state = '{PENDING}', lease_owner = NULL,"
            f" lease_expires_at = NULL, updated_at = now() WHERE {_FENCE}"  # nosec B608 # constants
        ),
        _fenced(claim, rows),
    ).rowcount
    if returned and claim.budgeted:
        session.execute(
            text(
                "UPDATE throttle_queues SET window_budget = window_budget + :n"
                " WHERE id = :queue_id AND window_opens_at = :opens"
            ),
            {"n": returned, "queue_id": claim.queue_id, "opens": claim.window_opens_at},
        )
    session.execute(RECOMPUTE_NEXT_RELEASE, {"queue_id": claim.queue_id})
    session.commit()
    return returned
