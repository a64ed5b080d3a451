"""Durable, idempotent admission of HubSpot execution requests.

An execution is answered only after the transaction that stores it has committed (invariant 1).
Concurrent admissions of one process share a transaction (group commit, see group_commit.py): one
multi-row `INSERT ... ON CONFLICT (callback_id) DO NOTHING RETURNING` decides, per callbackId,
whether this is the first delivery; a redelivery is answered from the stored row (invariant 2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert

from throttle_app.durations import format_iso_duration
from throttle_app.execution_request import ExecutionRequest
from throttle_app.group_commit import CommitTimeout, GroupCommitter
from throttle_app.models import (
    CLAIMED,
    COMPLETED,
    PENDING,
    ActionExecution,
    ThrottleQueue,
)

BLOCK, SUCCESS, FAIL_CONTINUE = "BLOCK", "SUCCESS", "FAIL_CONTINUE"

__all__ = ["Admission", "AdmissionUnavailable", "Answer", "QueueTouched"]


class AdmissionUnavailable(Exception):
    """The database could not store the execution in time: answer 503, HubSpot retries."""


@dataclass(frozen=True)
class Answer:
    """What HubSpot is told. `conflict` means the callbackId belongs to another queue."""

    state: str | None
    hold: str | None = None
    conflict: bool = False
    created: bool = False

    def output_fields(self) -> dict[str, str]:
        fields = {"hs_execution_state": str(self.state)}
        if self.hold is not None:
            fields["hs_expiration_duration"] = self.hold
        return fields


@dataclass(frozen=True)
class QueueTouched:
    """A queue that received new executions in a committed batch (for waking its release)."""

    queue_id: int
    next_release_at: datetime | None
    window_budget: int


def answer_for_stored(state: str, remaining_seconds: float) -> Answer:
    """The answer that matches a stored execution's state (a HubSpot redelivery)."""
    if state in (PENDING, CLAIMED):
        if remaining_seconds <= 0:
            return Answer(FAIL_CONTINUE)
        return Answer(BLOCK, hold=format_iso_duration(timedelta(seconds=remaining_seconds)))
    if state == COMPLETED:
        return Answer(SUCCESS)
    return Answer(FAIL_CONTINUE)


class Admission:
    """Stores execution requests in batches and answers each one after its commit."""

    def __init__(
        self,
        engine: Engine,
        hold: timedelta,
        deadline_seconds: float,
        writers: int = 2,
        max_batch: int = 500,
        after_commit: Callable[[list[QueueTouched]], None] | None = None,
    ) -> None:
        self._engine = engine
        self._hold = hold
        self._hold_iso = format_iso_duration(hold)
        self._deadline = deadline_seconds
        self._after_commit = after_commit
        self._committer: GroupCommitter[ExecutionRequest, Answer] = GroupCommitter(
            self._write_batch, writers=writers, max_batch=max_batch, name="admission"
        )

    def admit(self, request: ExecutionRequest) -> Answer:
        """Store (or find) the execution; raise AdmissionUnavailable when that fails or is slow."""
        try:
            return self._committer.submit(request, timeout=self._deadline)
        except CommitTimeout as exc:
            raise AdmissionUnavailable(str(exc)) from None
        except Exception as exc:
            raise AdmissionUnavailable(f"database error: {type(exc).__name__}") from exc

    def close(self) -> None:
        self._committer.close()

    def _write_batch(self, requests: Sequence[ExecutionRequest]) -> list[Answer]:
        with self._engine.begin() as conn:
            queues = _upsert_queues(conn, requests)
            first: dict[str, ExecutionRequest] = {}
            for request in requests:
                first.setdefault(request.callback_id, request)
            rows = [
                _execution_row(request, queues[request.queue_key].queue_id, self._hold)
                for request in first.values()
            ]
            inserted = set(
                conn.execute(
                    insert(ActionExecution.__table__)
                    .values(rows)
                    .on_conflict_do_nothing(index_elements=["callback_id"])
                    .returning(ActionExecution.__table__.c.callback_id)
                ).scalars()
            )
            stored = _stored(conn, [cid for cid in first if cid not in inserted])
        answers = []
        claimed_first: set[str] = set()
        for request in requests:
            cid = request.callback_id
            if cid in inserted and cid not in claimed_first:
                claimed_first.add(cid)
                answers.append(Answer(BLOCK, hold=self._hold_iso, created=True))
                continue
            queue_id, state, remaining = stored.get(cid) or (
                queues[first[cid].queue_key].queue_id,
                PENDING,
                self._hold.total_seconds(),
            )
            if queue_id != queues[request.queue_key].queue_id:
                answers.append(Answer(None, conflict=True))
            else:
                answers.append(answer_for_stored(state, remaining))
        if self._after_commit and inserted:
            touched_keys = {first[cid].queue_key for cid in inserted}
            self._after_commit([queues[key] for key in sorted(touched_keys)])
        return answers


def _execution_row(request: ExecutionRequest, queue_id: int, hold: timedelta) -> dict:
    return {
        "callback_id": request.callback_id,
        "queue_id": queue_id,
        "portal_id": request.portal_id,
        "workflow_id": request.workflow_id,
        "action_id": request.action_id,
        "object_id": request.object_id,
        "object_type": request.object_type,
        "max_throughput": request.rate.max_throughput,
        "period_seconds": request.rate.period_seconds,
        "hold_expires_at": func.now() + hold,
    }


def _upsert_queues(conn, requests: Sequence[ExecutionRequest]) -> dict[str, QueueTouched]:
    """Create missing queues, record a changed arrival rate, return every queue of the batch."""
    latest: dict[str, ExecutionRequest] = {}
    for request in requests:
        latest[request.queue_key] = request  # the last arrival's rate wins
    keys = sorted(latest)  # one lock order for every writer: no deadlocks
    conn.execute(
        insert(ThrottleQueue.__table__)
        .values(
            [
                {
                    "queue_key": key,
                    "portal_id": latest[key].portal_id,
                    "workflow_id": latest[key].workflow_id,
                    "action_id": latest[key].action_id,
                    "max_throughput": latest[key].rate.max_throughput,
                    "period_seconds": latest[key].rate.period_seconds,
                }
                for key in keys
            ]
        )
        .on_conflict_do_nothing(index_elements=["queue_key"])
    )
    rows = conn.execute(
        select(
            ThrottleQueue.id,
            ThrottleQueue.queue_key,
            ThrottleQueue.max_throughput,
            ThrottleQueue.period_seconds,
            ThrottleQueue.next_release_at,
            ThrottleQueue.window_budget,
        ).where(ThrottleQueue.queue_key.in_(keys))
    ).all()
    changed = [
        {
            "qid": row.id,
            "m": latest[row.queue_key].rate.max_throughput,
            "p": latest[row.queue_key].rate.period_seconds,
        }
        for row in rows
        if (row.max_throughput, row.period_seconds)
        != (latest[row.queue_key].rate.max_throughput, latest[row.queue_key].rate.period_seconds)
    ]
    if changed:
        conn.execute(
            update(ThrottleQueue.__table__)
            .where(ThrottleQueue.__table__.c.id == bindparam("qid"))
            .values(
                max_throughput=bindparam("m"), period_seconds=bindparam("p"), updated_at=func.now()
            ),
            changed,
        )
    return {
        row.queue_key: QueueTouched(row.id, row.next_release_at, row.window_budget) for row in rows
    }


def _stored(conn, callback_ids: list[str]) -> dict[str, tuple[int, str, float]]:
    if not callback_ids:
        return {}
    rows = conn.execute(
        text(
            "SELECT callback_id, queue_id, state,"
            " EXTRACT(EPOCH FROM hold_expires_at - now()) AS remaining"
            " FROM action_executions WHERE callback_id = ANY(:ids)"
        ),
        {"ids": callback_ids},
    ).all()
    return {row.callback_id: (row.queue_id, row.state, float(row.remaining)) for row in rows}
