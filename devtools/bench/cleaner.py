"""Benchmark one cleaner pass over many queues that have work (what a Redis wipe leaves: every
queue must be woken again from PostgreSQL), on a fresh benchmark database.

    python scripts/bench_cleaner.py [--queues 2000] [--passes 3]
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

import psycopg2

from devtools.bench.environment import DB, PORTAL, SECRET, installed_app
from fake_hubspot import FakeHubSpot
from throttle_app.extensions import db
from throttle_app.release import cleaner
from throttle_app.release.schedule import WAKEUPS_KEY
from throttle_app.services import services_of


def queues_with_work(count: int) -> None:
    """`count` queues of one connected portal, three pending executions each."""
    conn = psycopg2.connect(DB)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO throttle_queues (queue_key, portal_id, workflow_id, action_id,"
            " max_throughput, period_seconds)"
            " SELECT %s || ':1:' || n, %s, 1, n::text, 10, 1 FROM generate_series(1, %s) n",
            (PORTAL, PORTAL, count),
        )
        cur.execute(
            "INSERT INTO action_executions (callback_id, queue_id, portal_id, workflow_id,"
            " action_id, max_throughput, period_seconds, hold_expires_at)"
            " SELECT q.id || '-' || n, q.id, q.portal_id, 1, q.action_id, 10, 1,"
            " now() + interval '7 days' FROM throttle_queues q, generate_series(1, 3) n"
        )
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queues", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    with FakeHubSpot(client_id="bench", client_secret=SECRET) as fake:
        _, app = installed_app(fake)
        queues_with_work(args.queues)
        with app.app_context():
            schedule = services_of(app).schedule
            for n in range(1, args.passes + 1):
                schedule.connection.delete(WAKEUPS_KEY)  # as after a Redis wipe
                started = time.perf_counter()
                report = cleaner.clean(db.session, schedule, timedelta(milliseconds=150))
                elapsed = time.perf_counter() - started
                woken = schedule.connection.zcard(WAKEUPS_KEY)
                print(
                    f"pass {n}: {args.queues} queues with work, {report.woken} woken"
                    f" ({woken} wake-ups in Redis) in {elapsed:.2f}s"
                )
            db.session.remove()


if __name__ == "__main__":
    main()
