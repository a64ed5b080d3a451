"""`python scripts/bench_ops.py`: what the operator page and the expiry-risk reads cost on
production-sized tables.

A fresh benchmark database with `--queues-idle` idle queues and `--terminal-rows` terminal rows
(preload.py), then `--queues-busy` queues of the same portal holding `--backlog` pending
executions each, a quarter of them on a weekday window in New York (release/policy.py walks
their spans) and every fifth one with holds close enough to be at risk. Then, 20 runs each: the
queue listing, the risk scan (`/metrics` and the cleaner), `GET /metrics`, and `GET /ops` (the
first page, where the queues at risk are, and the last).
"""

from __future__ import annotations

import argparse
import os

from devtools.bench import preload, reads
from devtools.bench.environment import DB, PORTAL, SECRET, installed_app
from devtools.database import connect
from fake_hubspot import FakeHubSpot
from throttle_app.extensions import db
from throttle_app.ops.ops_listing import PAGE_SIZE
from throttle_app.release import queue_admin
from throttle_app.release.risk_scan import queues_at_risk

BUSY_WORKFLOW_BASE = 900_000

_BUSY_QUEUES = """
    INSERT INTO throttle_queues (queue_key, portal_id, workflow_id, action_id, max_throughput,
        period_seconds, release_days, window_start, window_end, time_zone)
    SELECT %(portal)s || ':' || (%(base)s + n) || ':1', %(portal)s, %(base)s + n, '1', 10, 3600,
           CASE WHEN n %% 4 = 0 THEN 31 END, CASE WHEN n %% 4 = 0 THEN time '09:00' END,
           CASE WHEN n %% 4 = 0 THEN time '17:00' END,
           CASE WHEN n %% 4 = 0 THEN 'America/New_York' END
    FROM generate_series(1, %(count)s) AS n
    RETURNING id
"""

# Each busy queue's backlog; the holds of every fifth queue end in 2 hours (at risk).
_BUSY_ROWS = """
    INSERT INTO action_executions (callback_id, queue_id, portal_id, workflow_id, action_id,
        max_throughput, period_seconds, hold_expires_at)
    SELECT 'busy-' || q.id || '-' || n, q.id, q.portal_id, q.workflow_id, '1', 10, 3600,
           CASE WHEN q.id %% 5 = 0 THEN now() + interval '2 hours'
                ELSE now() + interval '28 days' END
    FROM throttle_queues q CROSS JOIN generate_series(1, %(backlog)s) AS n
    WHERE q.id = ANY(%(ids)s)
"""


def busy_queues(count: int, backlog: int) -> None:
    conn = connect(DB)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                _BUSY_QUEUES, {"portal": PORTAL, "base": BUSY_WORKFLOW_BASE, "count": count}
            )
            ids = [row[0] for row in cur.fetchall()]
            cur.execute(_BUSY_ROWS, {"ids": ids, "backlog": backlog})
    finally:
        conn.close()
    preload.vacuum_analyze(DB, "action_executions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    preload.add_options(parser)
    parser.add_argument("--queues-busy", type=int, default=2000, help="queues with a backlog")
    parser.add_argument("--backlog", type=int, default=50, help="pending rows per busy queue")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with FakeHubSpot(client_id="bench", client_secret=SECRET) as fake:
        _, app = installed_app(fake, **reads.READS_ENV)
        preload.tables(DB, PORTAL, args)
        busy_queues(args.queues_busy, args.backlog)
        print(
            f"tables: {args.terminal_rows:,} terminal rows, {args.queues_idle:,} idle queues,"
            f" {args.queues_busy:,} queues holding {args.backlog} each;"
            f" load average {os.getloadavg()[0]:.2f}"
        )
        client = app.test_client()
        with app.app_context():
            session = db.session
            count = len(queue_admin.queue_statuses(session))
            at_risk = len(queues_at_risk(session, reads.now()))
            print(f"{count:,} queues, {at_risk:,} at risk")
            reads.measure(
                "queue listing (queue_statuses)",
                lambda: queue_admin.queue_statuses(session),
                args.repeat,
            )
            reads.measure(
                "risk scan (queues_at_risk)",
                lambda: queues_at_risk(session, reads.now()),
                args.repeat,
            )
            session.remove()
        reads.measure("GET /metrics", lambda: reads.scrape(client), args.repeat)
        for page in (1, -(-count // PAGE_SIZE)):
            reads.measure(
                f"GET /ops?page={page}",
                lambda page=page: reads.page_of(client, f"/ops?page={page}"),
                args.repeat,
            )
        print(f"load average {os.getloadavg()[0]:.2f}")
