"""Benchmark one cleaner pass over many queues that have work (what a Redis wipe leaves: every
queue must be woken again from PostgreSQL), then the daily purge, on a fresh benchmark database.

With production-sized tables (devtools/bench/preload.py: `--queues-idle K` queues without a
backlog, `--terminal-rows N` terminal executions over them, finished over the last 36 days),
the purge removes the day older than the 35 days kept; each of its DELETE statements (one per
batch of THROTTLE_PURGE_BATCH_SIZE) is timed on its own.

    python scripts/bench_cleaner.py [--queues 2000] [--passes 3]
        [--terminal-rows N --queues-idle K]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta

import psycopg2
from sqlalchemy import event

from devtools.bench import preload
from devtools.bench.environment import DB, PORTAL, SECRET, installed_app, release_schedule
from devtools.bench.reads import p90
from fake_hubspot import FakeHubSpot
from throttle_app.extensions import db
from throttle_app.release import cleaner
from throttle_app.release.schedule import WAKEUPS_KEY


def queues_with_work(count: int) -> None:
    """`count` new queues of one connected portal, three pending executions each."""
    conn = psycopg2.connect(DB)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO throttle_queues (queue_key, portal_id, workflow_id, action_id,"
            " max_throughput, period_seconds)"
            " SELECT %s || ':1:' || n, %s, 1, n::text, 10, 1 FROM generate_series(1, %s) n"
            " RETURNING id",
            (PORTAL, PORTAL, count),
        )
        ids = [row[0] for row in cur.fetchall()]
        cur.execute(
            "INSERT INTO action_executions (callback_id, queue_id, portal_id, workflow_id,"
            " action_id, max_throughput, period_seconds, hold_expires_at)"
            " SELECT q.id || '-' || n, q.id, q.portal_id, 1, q.action_id, 10, 1,"
            " now() + interval '7 days' FROM throttle_queues q, generate_series(1, 3) n"
            " WHERE q.id = ANY(%s)",
            (ids,),
        )
    conn.close()


def passes(app, count: int, queues: int) -> None:
    with app.app_context():
        schedule = release_schedule(app)
        try:
            for n in range(1, count + 1):
                schedule.connection.delete(WAKEUPS_KEY)  # as after a Redis wipe
                print(f"pass {n}: {queues} queues with work, {one_pass(schedule)}")
        finally:
            db.session.remove()


def one_pass(schedule) -> str:
    """One timed cleaner pass, as a line of the report."""
    started = time.perf_counter()
    try:
        report = cleaner.clean(db.session, schedule, timedelta(milliseconds=150))
    except Exception as exc:  # a statement timeout is a result here, not a crash
        db.session.rollback()
        statement = " ".join(str(getattr(exc, "statement", "")).split())[:60]
        elapsed = time.perf_counter() - started
        return f"FAILED after {elapsed:.1f}s: {type(exc).__name__} in {statement!r}"
    elapsed = time.perf_counter() - started
    woken = schedule.connection.zcard(WAKEUPS_KEY)
    return f"{report.woken} woken ({woken} wake-ups in Redis) in {elapsed:.2f}s"


def purge(app) -> None:
    """The daily purge at the deployment's retention and batch size, each batch timed."""
    settings = app.config["THROTTLE_SETTINGS"]
    batches: list[float] = []

    def started(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_started"] = time.perf_counter()

    def finished(conn, cursor, statement, parameters, context, executemany):
        if "DELETE FROM action_executions" in statement:  # a purge batch
            batches.append((time.perf_counter() - conn.info.pop("bench_started")) * 1000)

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", started)
        event.listen(db.engine, "after_cursor_execute", finished)
        try:
            began = time.perf_counter()
            deleted = cleaner.purge(
                db.session, timedelta(days=settings.retention_days), settings.purge_batch_size
            )
            total = time.perf_counter() - began
        finally:
            event.remove(db.engine, "before_cursor_execute", started)
            event.remove(db.engine, "after_cursor_execute", finished)
            db.session.remove()
    print(
        f"purge: {deleted:,} rows in {len(batches)} batches of {settings.purge_batch_size}"
        f" in {total:.2f}s; per batch median {statistics.median(batches):.1f} ms,"
        f" p90 {p90(batches):.1f} ms, max {max(batches):.1f} ms, last {batches[-1]:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queues", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=3)
    preload.add_options(parser)
    args = parser.parse_args()
    with FakeHubSpot(client_id="bench", client_secret=SECRET) as fake:
        _, app = installed_app(fake)
        preload.tables(DB, PORTAL, args)
        queues_with_work(args.queues)
        print(
            f"tables: {args.queues} queues with work, {args.queues_idle:,} idle queues,"
            f" {args.terminal_rows:,} terminal rows"
        )
        passes(app, args.passes, args.queues)
        purge(app)


if __name__ == "__main__":
    main()
