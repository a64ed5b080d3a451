"""Production-sized tables for the benchmarks, made in SQL with `generate_series`.

A deployment keeps terminal executions for THROTTLE_RETENTION_DAYS (35): at 350,000 executions a
day `action_executions` holds about 12M rows, nearly all of them terminal, and `throttle_queues`
holds every queue ever used, most of them idle. `idle_queues` and `terminal_rows` build that
history in the benchmark's database before its live rows are written, so the live rows are the
newest, as in production:

- idle queues: one connected portal, no backlog;
- terminal rows: spread round-robin over the idle queues, `finished_at` spread evenly over the
  last TERMINAL_SPAN_DAYS days (the 35 days kept plus the one day the daily purge removes),
  oldest first; 1 in 50 failed (FAIL_CONTINUE after 3 attempts), 1 in 997 expired, the rest
  completed.

Both write in chunks of CHUNK_ROWS, one transaction each, then VACUUM ANALYZE the table (as
autovacuum would have by then), so the planner sees the table as it is.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from devtools.database import connect

TERMINAL_SPAN_DAYS = 36
CHUNK_ROWS = 1_000_000
IDLE_WORKFLOW_BASE = 100_000  # idle queue i is workflow IDLE_WORKFLOW_BASE + i, action "1"

_IDLE_QUEUES = """
    INSERT INTO throttle_queues (queue_key, portal_id, workflow_id, action_id,
                                 max_throughput, period_seconds, last_sent_at)
    SELECT %(portal)s || ':' || (%(base)s + n) || ':1', %(portal)s, %(base)s + n, '1',
           10, 60, now() - interval '1 day'
    FROM generate_series(1, %(count)s) AS n
    RETURNING id
"""

# Row n of `total` (1-based) belongs to idle queue `first + n % queues` and finished
# (1 - n / total) x TERMINAL_SPAN_DAYS ago: the first rows (lowest ids) are the oldest.
_TERMINAL_ROWS = """
    INSERT INTO action_executions (callback_id, queue_id, portal_id, workflow_id, action_id,
        object_id, object_type, max_throughput, period_seconds, state, outcome, attempts,
        last_failure_reason, hold_expires_at, created_at, updated_at, finished_at)
    SELECT 'ap-' || %(portal)s || '-' || (2000000000000 + n) || '-1-0',
           %(first)s + n %% %(queues)s, %(portal)s,
           %(base)s + 1 + n %% %(queues)s, '1',
           100000000000 + n, 'CONTACT', 10, 60,
           CASE WHEN n %% 50 = 0 THEN 'failed' WHEN n %% 997 = 0 THEN 'expired'
                ELSE 'completed' END,
           CASE WHEN n %% 50 = 0 THEN 'FAIL_CONTINUE' ELSE 'SUCCESS' END,
           CASE WHEN n %% 50 = 0 THEN 3 ELSE 0 END,
           CASE WHEN n %% 50 = 0 THEN 'HubSpot answered 400: callback not found'
                WHEN n %% 997 = 0 THEN 'HubSpot hold expired before release' END,
           f.at - interval '10 minutes' + interval '28 days',
           f.at - interval '10 minutes', f.at, f.at
    FROM generate_series(%(start)s, %(stop)s) AS n
    CROSS JOIN LATERAL (
        SELECT now() - make_interval(days => %(span)s)
                       * (1 - n::float8 / %(total)s) AS at) f
"""


def idle_queues(database_url: str, portal: int, count: int) -> list[int]:
    """`count` queues of `portal` with no backlog (the last send a day ago); their ids."""
    if count <= 0:
        return []
    conn = connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                _IDLE_QUEUES, {"portal": portal, "base": IDLE_WORKFLOW_BASE, "count": count}
            )
            ids = sorted(row[0] for row in cur.fetchall())
    finally:
        conn.close()
    vacuum_analyze(database_url, "throttle_queues")
    return ids


def terminal_rows(
    database_url: str,
    portal: int,
    queue_ids: list[int],
    total: int,
    progress: Callable[[str], None] = print,
) -> None:
    """`total` terminal executions spread over `queue_ids` (contiguous ids, as `idle_queues`
    makes them), then VACUUM ANALYZE."""
    if total <= 0:
        return
    if not queue_ids or queue_ids[-1] - queue_ids[0] + 1 != len(queue_ids):
        raise ValueError("terminal rows need a contiguous, non-empty range of queue ids")
    started = time.monotonic()
    conn = connect(database_url)
    try:
        for start in range(1, total + 1, CHUNK_ROWS):
            stop = min(total, start + CHUNK_ROWS - 1)
            with conn, conn.cursor() as cur:
                cur.execute(
                    _TERMINAL_ROWS,
                    {
                        "portal": portal,
                        "first": queue_ids[0],
                        "queues": len(queue_ids),
                        "start": start,
                        "stop": stop,
                        "total": total,
                        "base": IDLE_WORKFLOW_BASE,
                        "span": TERMINAL_SPAN_DAYS,
                    },
                )
            progress(
                f"preload: {stop:,} of {total:,} terminal rows ({time.monotonic() - started:.0f}s)"
            )
    finally:
        conn.close()
    vacuum_analyze(database_url, "action_executions")
    progress(f"preload: done with VACUUM ANALYZE in {time.monotonic() - started:.0f}s")


def vacuum_analyze(database_url: str, table: str) -> None:
    """VACUUM ANALYZE one of the service's tables (outside a transaction, as VACUUM must)."""
    if table not in ("action_executions", "throttle_queues"):
        raise ValueError(f"not a table the benchmarks preload: {table!r}")
    conn = connect(database_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"VACUUM ANALYZE {table}")  # a name from the fixed list above
    finally:
        conn.close()


def add_options(parser: argparse.ArgumentParser) -> None:
    """The benchmarks' --terminal-rows and --queues-idle options."""
    parser.add_argument(
        "--terminal-rows", type=int, default=0, help="terminal executions to preload"
    )
    parser.add_argument(
        "--queues-idle", type=int, default=0, help="queues without a backlog to preload"
    )


def tables(database_url: str, portal: int, args: argparse.Namespace) -> None:
    """The idle queues and terminal rows the options ask for."""
    if args.terminal_rows > 0 and args.queues_idle <= 0:
        raise SystemExit("--terminal-rows needs idle queues to belong to (--queues-idle K)")
    ids = idle_queues(database_url, portal, args.queues_idle)
    terminal_rows(database_url, portal, ids, args.terminal_rows)
