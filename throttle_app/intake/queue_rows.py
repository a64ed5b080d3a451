"""The queue rows admission writes: created on a queue's first execution, and given the rate and
release policy of the latest admitted execution when they change.

A named queue (`queueName`) is shared by every workflow of its portal that names it, so its rate
and policy are those of whichever of them was admitted last; an operator who wants one fixed
rate for it sets a throttle_configs override on action `queue:<name>` (the queue's action id),
which wins over every arrival, as for any queue.
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg2.extras import execute_values

from throttle_app.intake.execution_request import ExecutionRequest
from throttle_app.release.claims import NEXT_RELEASE_BY_RATE
from throttle_app.release.policy_store import POLICY_COLUMN_NAMES, policy_select, to_columns

# What a queue row holds that an execution decides: the rate, then the policy columns.
Signature = tuple

_COLUMNS = ", ".join(POLICY_COLUMN_NAMES)
# Typed, so a batch whose values are all NULL still matches the columns' types.
_TEMPLATE = (
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s::smallint, %s::time, %s::time, %s, %s::timestamptz)"
)

_UPSERT_QUEUES = f"""
WITH incoming (queue_key, portal_id, workflow_id, action_id, queue_name, max_throughput,
               period_seconds, {_COLUMNS})
  AS (VALUES %s),
created AS (
  INSERT INTO throttle_queues
    (queue_key, portal_id, workflow_id, action_id, queue_name, max_throughput, period_seconds,
     {_COLUMNS})
  SELECT * FROM incoming ORDER BY queue_key
  ON CONFLICT (queue_key) DO NOTHING
  RETURNING id, queue_key, max_throughput, period_seconds, {_COLUMNS}
)
SELECT * FROM created
UNION ALL
SELECT q.id, q.queue_key, q.max_throughput, q.period_seconds, {policy_select("q")}
FROM throttle_queues q JOIN incoming USING (queue_key)
"""  # nosec B608 # module constants only; every value is a bound parameter

_SELECT_QUEUES = f"""
SELECT id, queue_key, max_throughput, period_seconds, {_COLUMNS}
FROM throttle_queues WHERE queue_key = ANY(%s)
"""  # nosec B608 # module constants only

# A changed rate or policy applies from the queue's next release: next_release_at goes back to
# what the rate alone says (a wait the old policy added ends; the claim applies the new one).
_POLICY_SETS = ", ".join(f"{name} = %s" for name in POLICY_COLUMN_NAMES)
_UPDATE_QUEUE = f"""
UPDATE throttle_queues q SET max_throughput = %s, period_seconds = %s, {_POLICY_SETS},
       next_release_at = {NEXT_RELEASE_BY_RATE}, updated_at = now()
WHERE id = %s
"""  # nosec B608 # column names and SQL from module constants; every value is a bound parameter


def signature(request: ExecutionRequest) -> Signature:
    """The queue row values this execution asks for."""
    return (request.rate.max_throughput, request.rate.period_seconds, *to_columns(request.policy))


def upsert_queues(cur, latest: dict[str, ExecutionRequest]) -> dict[str, tuple[int, Signature]]:
    """Create missing queues and record a changed rate or policy: key -> (id, signature)."""
    values = [
        (
            key,
            r.portal_id,
            r.queue_workflow_id,
            r.queue_action_id,
            r.queue_name,
            *signature(r),
        )
        for key, r in sorted(latest.items())
    ]
    rows = execute_values(cur, _UPSERT_QUEUES, values, template=_TEMPLATE, fetch=True)
    if len(rows) < len(values):
        # Another writer created a queue after this statement's snapshot: read it again.
        cur.execute(_SELECT_QUEUES, (list(latest),))
        rows = cur.fetchall()
    wanted = {key: signature(request) for key, request in latest.items()}
    changed = sorted(
        (queue_id, wanted[key]) for queue_id, key, *stored in rows if tuple(stored) != wanted[key]
    )
    if changed:
        cur.executemany(_UPDATE_QUEUE, [(*values, queue_id) for queue_id, values in changed])
    return {key: (queue_id, wanted[key]) for queue_id, key, *_ in rows}


def all_known(
    known: dict[str, tuple[int, Signature]], latest: Iterable[tuple[str, ExecutionRequest]]
) -> bool:
    """Every queue of the batch is known to this process with the values it asks for."""
    return all(key in known and known[key][1] == signature(r) for key, r in latest)
