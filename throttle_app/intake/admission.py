"""Durable, idempotent admission of HubSpot execution requests.

An execution is answered only after the transaction that stores it has committed (invariant 1).
Concurrent admissions of one process share a transaction (group commit, see group_commit.py): one
multi-row `INSERT ... ON CONFLICT (callback_id) DO NOTHING RETURNING` decides, per callbackId,
whether this is the first delivery; a redelivery is answered from the stored row (invariant 2).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import psycopg2
from sqlalchemy import Engine

from throttle_app.durations import format_iso_duration
from throttle_app.intake.execution_request import ExecutionRequest
from throttle_app.intake.group_commit import CommitTimeout, GroupCommitter, Overloaded
from throttle_app.intake.queue_rows import Signature, all_known, upsert_queues
from throttle_app.models import CLAIMED, COMPLETED, PENDING

log = logging.getLogger(__name__)

BLOCK, SUCCESS, FAIL_CONTINUE = "BLOCK", "SUCCESS", "FAIL_CONTINUE"

__all__ = ["Admission", "AdmissionUnavailable", "Answer"]

# Queues this process has seen: queue_key -> (queue_id, rate and policy). A batch whose queues
# are all known, at the rate and policy they were stored with, skips the queue statement.
KNOWN_QUEUES_LIMIT = 10_000
# Times a batch creates a queue again after finding it purged (each find costs one round trip).
QUEUE_GONE_RETRIES = 2


class AdmissionUnavailable(Exception):
    """The database could not store the execution in time: answer 503, HubSpot retries."""


@dataclass(frozen=True)
class Answer:
    """What HubSpot is told. `conflict` means the callbackId belongs to another queue."""

    state: str | None
    hold: str | None = None
    conflict: bool = False
    created: bool = False
    retry: bool = False  # the stored row could not be read back in this batch: answer 503

    def output_fields(self) -> dict[str, str]:
        fields = {"hs_execution_state": str(self.state)}
        if self.hold is not None:
            fields["hs_expiration_duration"] = self.hold
        return fields


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
        writers: int,
        max_batch: int,
        after_commit: Callable[[list[int]], None] | None = None,
    ) -> None:
        self._engine = engine
        self._known: dict[str, tuple[int, Signature]] = {}
        self._local = threading.local()  # one held connection per writer: no checkout per batch
        self._connections: list = []
        self._hold = hold
        self._hold_iso = format_iso_duration(hold)
        self._block = Answer(BLOCK, hold=self._hold_iso, created=True)  # immutable, shared
        self._deadline = deadline_seconds
        self._after_commit = after_commit
        self._committer: GroupCommitter[ExecutionRequest, Answer] = GroupCommitter(
            self._write_batch, writers=writers, max_batch=max_batch, name="admission"
        )

    def admit(self, request: ExecutionRequest) -> Answer:
        """Store (or find) the execution; raise AdmissionUnavailable when that fails or is slow."""
        try:
            answer = self._committer.submit(request, timeout=self._deadline)
        except (CommitTimeout, Overloaded) as exc:
            raise AdmissionUnavailable(str(exc)) from None
        except Exception as exc:
            raise AdmissionUnavailable(f"database error: {type(exc).__name__}") from exc
        if answer.retry:
            raise AdmissionUnavailable("the stored execution changed while it was read; retry")
        return answer

    def close(self) -> None:
        """Stop the writers and give their connections back."""
        self._committer.close()
        for conn in self._connections:
            conn.close()
        self._connections.clear()

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._engine.raw_connection()
            try:
                # Autocommit: each statement below is atomic and durable when it returns, and
                # the common batch is one statement: one round trip, no BEGIN/COMMIT pair.
                conn.driver_connection.autocommit = True
                with conn.cursor() as cur:  # planned once per connection, not once per batch
                    cur.execute(_PREPARE_INSERT)
            except BaseException:
                conn.invalidate()  # never kept without its prepared statement
                raise
            self._local.conn = conn
            self._connections.append(conn)
        return conn

    def _write_batch(self, requests: Sequence[ExecutionRequest]) -> list[Answer]:
        held = getattr(self._local, "conn", None) is not None
        try:
            return self._write(requests)
        except psycopg2.OperationalError:
            # A writer's connection held from before PostgreSQL went away (a restart, a
            # failover) fails its first use after PostgreSQL is back, however long the writer
            # sat idle. The batch is idempotent (ON CONFLICT, then the stored rows are read), so
            # it goes once more on a new connection instead of answering 503 that late.
            if not (held and getattr(self._local, "closed_by_server", False)):
                raise
            log.info("admission: a held connection was closed by the server; batch retried")
            return self._write(requests)

    def _write(self, requests: Sequence[ExecutionRequest]) -> list[Answer]:
        first: dict[str, ExecutionRequest] = {}
        for request in requests:
            first.setdefault(request.callback_id, request)
        # Raw DBAPI cursor: this is the hot path; one prepared statement per batch, with no
        # SQLAlchemy statement compiled for every batch size.
        conn = self._connection()
        self._local.closed_by_server = False
        try:
            with conn.cursor() as cur:
                # Queues first (a queue without executions is harmless), then the executions:
                # once this INSERT returns, every row it reports is committed.
                queues = self._queue_ids(cur, requests)
                inserted = _insert_executions(cur, first.values(), queues, self._hold)
                stored = _stored(cur, [cid for cid in first if cid not in inserted])
                for _ in range(QUEUE_GONE_RETRIES):
                    if len(inserted) + len(stored) == len(first):
                        break
                    # Neither inserted nor stored: its queue was purged (idle and empty, see
                    # release/cleaner.py) since this process learned its id. Create it anew.
                    gone = [r for c, r in first.items() if c not in inserted and c not in stored]
                    for request in gone:
                        self._known.pop(request.queue_key, None)
                    queues.update(self._queue_ids(cur, gone))
                    again = _insert_executions(cur, gone, queues, self._hold)
                    inserted |= again
                    stored.update(
                        _stored(cur, [r.callback_id for r in gone if r.callback_id not in again])
                    )
        except BaseException:
            self._local.conn = None
            self._local.closed_by_server = bool(conn.driver_connection.closed)
            if conn in self._connections:
                self._connections.remove(conn)
            conn.invalidate()  # a broken or half-used connection never goes back to the pool
            self._known.clear()
            raise
        if self._after_commit and inserted:
            self._after_commit(sorted({queues[first[cid].queue_key] for cid in inserted}))
        if len(inserted) == len(requests):  # the common batch: all new, no duplicates
            return [self._block] * len(requests)
        answers = []
        answered_first: set[str] = set()
        for request in requests:
            cid = request.callback_id
            if cid in inserted and cid not in answered_first:
                answered_first.add(cid)
                answers.append(self._block)
                continue
            # A redelivery, or the same callbackId twice in one batch (then: as stored now).
            if cid in stored:
                queue_id, state, remaining = stored[cid]
            elif cid in inserted:
                queue_id, state, remaining = (
                    queues[first[cid].queue_key],
                    PENDING,
                    self._hold.total_seconds(),
                )
            else:  # it conflicted on insert, then was purged before the read: nothing to say
                answers.append(Answer(None, retry=True))
                continue
            if queue_id != queues[request.queue_key]:
                answers.append(Answer(None, conflict=True))
            else:
                answers.append(answer_for_stored(state, remaining))
        return answers

    def _queue_ids(self, cur, requests: Iterable[ExecutionRequest]) -> dict[str, int]:
        """queue_key -> queue id for every queue of the batch, creating queues as needed."""
        latest: dict[str, ExecutionRequest] = {}
        for request in requests:
            latest[request.queue_key] = request  # the last arrival's rate and policy win
        known = self._known
        if all_known(known, latest.items()):
            return {key: known[key][0] for key in latest}
        rows = upsert_queues(cur, latest)
        if len(known) > KNOWN_QUEUES_LIMIT:
            known.clear()
        for key, row in rows.items():
            known[key] = row
        return {key: row[0] for key, row in rows.items()}


# The batch travels as one JSON parameter (an array of row arrays): one quoted string for
# psycopg2 to send, however many rows; adapting rows one by one cost more Python time than the
# insert itself (docs/measurements.md).
# An execution is written only under a FOR KEY SHARE lock of its queue row, taken in the same
# statement: the cleaner's queue purge locks a row FOR UPDATE (which conflicts) and checks it is
# still empty before deleting it, so a queue is never deleted under an admission, and a row it
# deleted first is not returned here (its executions are not written, and the batch creates the
# queue again). KEY SHARE does not conflict with the release claim's FOR NO KEY UPDATE.
_INSERT_EXECUTIONS = """
WITH live_queues AS (
  SELECT id FROM throttle_queues
  WHERE id IN (SELECT DISTINCT (r->>1)::bigint FROM json_array_elements($2) AS r)
  FOR KEY SHARE
)
INSERT INTO action_executions
  (callback_id, queue_id, portal_id, workflow_id, action_id, object_id, object_type,
   max_throughput, period_seconds, priority, hold_expires_at)
SELECT r->>0, (r->>1)::bigint, (r->>2)::bigint, (r->>3)::bigint, r->>4, (r->>5)::bigint,
       r->>6, (r->>7)::int, (r->>8)::int, (r->>9)::smallint, now() + $1
FROM json_array_elements($2) AS r JOIN live_queues q ON q.id = (r->>1)::bigint
ON CONFLICT (callback_id) DO NOTHING
RETURNING callback_id
"""
# Prepared once per writer connection: the batch statement is planned once, not per batch.
_PREPARE_INSERT = f"PREPARE throttle_admit (interval, json) AS {_INSERT_EXECUTIONS}"


def _insert_executions(
    cur, requests: Iterable[ExecutionRequest], queues: dict[str, int], hold: timedelta
) -> set[str]:
    rows = [
        (
            r.callback_id,
            queues[r.queue_key],
            r.portal_id,
            r.workflow_id,
            r.action_id,
            r.object_id,
            r.object_type,
            r.rate.max_throughput,
            r.rate.period_seconds,
            r.priority,
        )
        for r in requests
    ]
    cur.execute("EXECUTE throttle_admit (%s, %s)", (hold, json.dumps(rows)))
    return {row[0] for row in cur.fetchall()}


def _stored(cur, callback_ids: list[str]) -> dict[str, tuple[int, str, float]]:
    if not callback_ids:
        return {}
    cur.execute(
        "SELECT callback_id, queue_id, state,"
        " EXTRACT(EPOCH FROM hold_expires_at - now()) AS remaining"
        " FROM action_executions WHERE callback_id = ANY(%s)",
        (callback_ids,),
    )
    return {cid: (queue_id, state, float(remaining)) for cid, queue_id, state, remaining in cur}
