"""Which executions a release takes, how many and when: the one place the rate is enforced.

A queue releases in windows. A window opens only when the previous one has spent its budget
and `next_release_at` has passed; it gets the effective rate's N as budget (a throttle_configs
override wins over the rate executions arrive with, from the next window on). Every claim takes
rows under the queue row's lock, so duplicate or concurrent jobs cannot exceed the budget.

`next_release_at` is never earlier than T after HubSpot answered the last send of the current
window, nor T after the end of any live lease (a worker may still send until its lease ends).
So the sends of two windows are always more than T apart, and no interval of length T holds
more than N sends.
`next_release_at` is computed with the T of the window it follows; when an override raises T,
the new window also waits for the new T after the last send and after every live lease end
(`_window_ready_at`), so no span of the new T sees the old N plus the new N.

Rows are claimed with a short lease and an owner token; every later update is fenced on both
(outcomes.py: what happens to claimed rows after a send; leases.py: the holder renews the lease
before a step it would not cover, and moves `next_release_at` with it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from throttle_app.release.policy_gate import is_open, may_open_at, window_size
from throttle_app.release.policy_store import from_columns, policy_select, queue_zone
from throttle_app.release.rates import period_seconds


@dataclass(frozen=True, order=True)
class ClaimedRow:
    id: int
    callback_id: str
    outcome: str
    created_at: datetime  # admission: the completion reports the wait since (outputFields)


@dataclass(frozen=True)
class Claim:
    """Rows leased to one owner; send them no earlier than `send_delay` seconds from now."""

    queue_id: int
    portal_id: int
    owner: uuid.UUID
    rows: list[ClaimedRow]
    send_delay: float
    lease_seconds: int
    window_opens_at: datetime
    budgeted: bool  # False while draining: nothing to give back to the budget
    window_seconds: float | None = None  # the window's period (spread: k*T/N, often < 1 s)


@dataclass(frozen=True)
class Idle:
    """Nothing to claim now (`next_look` says when to look again)."""


_LOCK_QUEUE = text(
    f"""
    SELECT q.id, q.portal_id, q.max_throughput, q.period_seconds, q.window_budget,
           q.window_period_seconds, q.window_opens_at, q.next_release_at, q.paused, q.draining,
           c.max_throughput AS override_max, c.time_period AS override_time,
           c.time_unit AS override_unit, clock_timestamp() AS now, {policy_select("q")}
    FROM throttle_queues q
    LEFT JOIN throttle_configs c ON c.portal_id = q.portal_id AND c.action_id = q.action_id
    WHERE q.id = :queue_id
    FOR NO KEY UPDATE OF q
    """  # nosec B608 # module constants only; every value is a bound parameter
)

# "Which executions": a pending row whose retry time has come and whose hold HubSpot still keeps.
# The one definition, used by the claim and by next_look.py (alias e).
CLAIMABLE = """e.state = 'pending'
          AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= clock_timestamp())
          AND e.hold_expires_at > clock_timestamp()"""

_CLAIM_ROWS = text(
    f"""
    UPDATE action_executions SET state = 'claimed', lease_owner = :owner,
           lease_expires_at = clock_timestamp() + make_interval(secs => :lease), updated_at = now()
    WHERE id IN (
        SELECT e.id FROM action_executions e
        WHERE e.queue_id = :queue_id AND {CLAIMABLE}
        ORDER BY e.priority DESC, e.id LIMIT :limit
        FOR UPDATE SKIP LOCKED)
    RETURNING id, callback_id, outcome, created_at
    """  # nosec B608 # module constants only; every value is a bound parameter
)


def _after_sends_and_leases(period: str) -> str:
    """SQL: T (`period`, an SQL expression in seconds) after the queue's last send and after
    the end of each of its live leases: the earliest a new window may open (alias q)."""
    return f"""q.last_sent_at + make_interval(secs => {period}),
        (SELECT max(e.lease_expires_at) FROM action_executions e
         WHERE e.queue_id = q.id AND e.state = 'claimed') + make_interval(secs => {period})"""  # nosec B608 # SQL from constants


# The earliest start of the next window by the rate alone (alias q): T after the current
# window opened, after its sends and after its live leases. NULL: idle, any time.
NEXT_RELEASE_BY_RATE = f"""GREATEST(
        q.window_opens_at + make_interval(secs => q.window_period_seconds),
        {_after_sends_and_leases("q.window_period_seconds")})"""  # nosec B608 # constants

RECOMPUTE_NEXT_RELEASE = text(
    f"""
    UPDATE throttle_queues q SET updated_at = now(), next_release_at = {NEXT_RELEASE_BY_RATE}
    WHERE q.id = :queue_id
    """  # nosec B608 # module constants only; every value is a bound parameter
)


def effective_rate(row) -> tuple[int, int]:
    """(N, T seconds): the operator's override when there is one, else the arrival rate."""
    if row.override_max is not None:
        return row.override_max, row.override_time * period_seconds("time_unit", row.override_unit)
    return row.max_throughput, row.period_seconds


_WINDOW_READY_AT = text(
    f"""
    SELECT GREATEST(q.next_release_at, {_after_sends_and_leases(":period")})
    FROM throttle_queues q WHERE q.id = :queue_id
    """  # nosec B608 # module constants only; every value is a bound parameter
)


def _window_ready_at(session: Session, queue_id: int, period: int) -> datetime | None:
    """The earliest start of a new window of `period` seconds (None: any time)."""
    return session.execute(_WINDOW_READY_AT, {"queue_id": queue_id, "period": period}).scalar()


def claim_next(
    session: Session,
    queue_id: int,
    batch_size: int,
    lease_seconds: int,
    lead: timedelta,
    min_call_interval: float = 0.0,
) -> Claim | Idle:
    """Claim up to one batch the window allows, or say when to look again. Commits.
    `min_call_interval`: seconds between calls the portal's bucket allows (spread windows are
    never shorter, policy_gate.window_size)."""
    queue = session.execute(_LOCK_QUEUE, {"queue_id": queue_id}).one_or_none()
    if queue is None or queue.paused:
        session.rollback()
        return Idle()
    now = queue.now
    policy = from_columns(
        queue.release_mode,
        queue.release_days,
        queue.window_start,
        queue.window_end,
        queue.time_zone,
        queue.start_at,
    )
    zone = queue_zone(session, policy, queue.portal_id)
    budget, opens, period = queue.window_budget, queue.window_opens_at, queue.window_period_seconds
    if queue.draining:  # the operator's drain: everything now, whatever the rate and policy
        limit, opens = batch_size, now
    elif budget > 0:
        opens = opens or now
        if not is_open(policy, zone, max(now, opens)):  # the allowed span ended mid-window
            _close_window(session, queue_id, may_open_at(policy, zone, now) or now + _NEVER)
            return Idle()
        limit = min(budget, batch_size)
    elif queue.next_release_at is None or now >= queue.next_release_at - lead:
        count, seconds = effective_rate(queue)
        budget, period = window_size(policy.mode, count, seconds, min_call_interval)
        ready = queue.next_release_at
        if (
            ready is None
            or queue.window_period_seconds is None
            or period > queue.window_period_seconds
        ):
            # next_release_at already holds every term for the old T; a longer T needs them anew
            ready = _window_ready_at(session, queue_id, period)
        if ready is not None and now < ready - lead:  # T was raised: wait for the new T
            _postpone(session, queue_id, ready)
            return Idle()
        opens = max(now, ready or now)
        allowed = may_open_at(policy, zone, opens)
        if allowed is None or now < allowed - lead:  # outside the policy: wait for it
            _postpone(session, queue_id, allowed or now + _NEVER)
            return Idle()
        opens = allowed
        limit = min(budget, batch_size)
    else:
        session.rollback()
        return Idle()
    owner = uuid.uuid4()
    rows = sorted(  # oldest first: RETURNING keeps no order
        ClaimedRow(r.id, r.callback_id, r.outcome, r.created_at)
        for r in session.execute(
            _CLAIM_ROWS,
            {"owner": owner, "lease": lease_seconds, "queue_id": queue_id, "limit": limit},
        )
    )
    if not rows:
        session.rollback()  # a window with nothing to send is not opened
        return Idle()
    if not queue.draining:
        session.execute(
            text(
                "UPDATE throttle_queues SET window_budget = :budget, window_opens_at = :opens,"
                " window_period_seconds = :period WHERE id = :queue_id"
            ),
            {"budget": budget - len(rows), "opens": opens, "period": period, "queue_id": queue_id},
        )
    session.execute(RECOMPUTE_NEXT_RELEASE, {"queue_id": queue_id})
    session.commit()
    return Claim(
        queue_id=queue_id,
        portal_id=queue.portal_id,
        owner=owner,
        rows=rows,
        send_delay=max(0.0, (opens - now).total_seconds()),
        lease_seconds=lease_seconds,
        window_opens_at=opens,
        budgeted=not queue.draining,
        window_seconds=period,
    )


def portal_of(session: Session, queue_id: int) -> int | None:
    """The queue's portal (None: no such queue). Ends the transaction."""
    portal = session.execute(
        text("SELECT portal_id FROM throttle_queues WHERE id = :queue_id"), {"queue_id": queue_id}
    ).scalar()
    session.rollback()
    return portal


# A policy that never opens again (none valid does) is looked at once a day, not in a loop.
_NEVER = timedelta(days=1)


def _close_window(session: Session, queue_id: int, reopens: datetime) -> None:
    """The policy closed while the window had budget left: the window ends (a window is not
    continued past the allowed span) and the next one waits for the policy. Commits."""
    session.execute(
        text(
            "UPDATE throttle_queues SET window_budget = 0,"
            " next_release_at = GREATEST(next_release_at, :reopens) WHERE id = :queue_id"
        ),
        {"reopens": reopens, "queue_id": queue_id},
    )
    session.commit()


def _postpone(session: Session, queue_id: int, ready: datetime) -> None:
    """Record the later start, so next_look wakes the queue then and not in a loop. Commits."""
    session.execute(
        text("UPDATE throttle_queues SET next_release_at = :ready WHERE id = :queue_id"),
        {"ready": ready, "queue_id": queue_id},
    )
    session.commit()
