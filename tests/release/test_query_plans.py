"""Every statement on the release, scrape, listing and cleaner paths reads action_executions
through an index, never a sequential scan, on a table that holds far more terminal rows than
live ones (as 35 days of retention make it in production).

The tables: 200,000 terminal executions over 400 idle queues (devtools/bench/preload.py, then
VACUUM ANALYZE), then a backlog in three more queues written after the analyze, as production
sees it between two autovacuum runs (statistics that saw almost no pending rows). Plans are
read with EXPLAIN (FORMAT JSON), the statements are not run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import text

from devtools.bench import plans, preload
from tests.conftest import TEST_DATABASE_URL, connect_test_database, service_env, truncate_all
from tests.support.release_helpers import PORTAL
from throttle_app import create_app
from throttle_app.config import Settings
from throttle_app.extensions import db
from throttle_app.ops.metrics_scrape import BACKLOG_SQL
from throttle_app.release import cleaner, next_look, queue_admin

TERMINAL_ROWS = 200_000
IDLE_QUEUES = 400


@pytest.fixture(scope="module")
def big(migrated_database: str) -> Iterator[Flask]:
    """An app over production-shaped tables (see the module docstring), written once for the
    module; the tables are emptied again afterwards."""
    truncate_all()
    idle = preload.idle_queues(TEST_DATABASE_URL, PORTAL, IDLE_QUEUES)
    preload.terminal_rows(TEST_DATABASE_URL, PORTAL, idle, TERMINAL_ROWS, progress=_quiet)
    conn = connect_test_database()
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO oauth_tokens (portal_id, access_token, refresh_token, expires_at)"
            " VALUES (%(portal)s, 'unused', 'unused', now() + interval '30 minutes')",
            {"portal": PORTAL},
        )
        cur.execute(
            "INSERT INTO throttle_queues (queue_key, portal_id, workflow_id, action_id,"
            " max_throughput, period_seconds)"
            " SELECT %(portal)s || ':1:' || n, %(portal)s, 1, n::text, 10, 1"
            " FROM generate_series(1, 3) n",
            {"portal": PORTAL},
        )
        cur.execute(  # an operator's override for the second backlog queue (action "2")
            "INSERT INTO throttle_configs (portal_id, action_id, max_throughput, time_period,"
            " time_unit) VALUES (%(portal)s, '2', 3, 2, 'minutes')",
            {"portal": PORTAL},
        )
        # 300 rows per backlog queue, a tenth of them waiting for a retry; ten of those are
        # claimed under a live lease, so 290 are pending.
        cur.execute(
            "INSERT INTO action_executions (callback_id, queue_id, portal_id, workflow_id,"
            " action_id, max_throughput, period_seconds, hold_expires_at, next_attempt_at)"
            " SELECT 'live-' || q.id || '-' || n, q.id, q.portal_id, 1, q.action_id, 10, 1,"
            " now() + interval '7 days',"
            " CASE WHEN n % 10 = 0 THEN now() + interval '1 minute' END"
            " FROM throttle_queues q CROSS JOIN generate_series(1, 300) n"
            " WHERE q.workflow_id = 1"
        )
        cur.execute(
            "UPDATE action_executions SET state = 'claimed', lease_owner = gen_random_uuid(),"
            " lease_expires_at = now() + interval '1 minute'"
            " WHERE callback_id LIKE 'live-%' AND split_part(callback_id, '-', 3)::int % 30 = 0"
        )
    conn.close()
    app = create_app(Settings.from_env(service_env()))
    yield app
    with app.app_context():
        db.engine.dispose()
    truncate_all()


def _quiet(_line: str) -> None:
    pass


def scalars(app: Flask, sql: str) -> list:
    with app.app_context():
        found = list(db.session.execute(text(sql)).scalars())
        db.session.remove()
    return found


def backlog_queues(app: Flask) -> list[int]:
    return scalars(app, "SELECT id FROM throttle_queues WHERE workflow_id = 1 ORDER BY id")


def plan(app: Flask, hot: plans.Hot) -> dict:
    """The plan PostgreSQL chooses for `hot` on the service's own connection (not run)."""
    with app.app_context():
        found = plans.sample(db.session, timedelta(days=35))
        (explained,) = plans.explain(db.session, hot, hot.params(found))
        db.session.remove()
    return (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]


def nodes(node: dict) -> Iterator[dict]:
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)


@pytest.mark.parametrize("hot", plans.HOT, ids=[hot.name for hot in plans.HOT])
def test_each_hot_statement_reads_action_executions_only_through_its_indexes(big, hot):
    found = plan(big, hot)
    scans = [n for n in nodes(found) if n.get("Relation Name") == "action_executions"]
    used = {n["Index Name"] for n in nodes(found) if n.get("Index Name") in executions_indexes(big)}
    kinds = {(n["Node Type"], n.get("Index Name")) for n in scans}
    assert scans, "the statement does not read action_executions"
    assert not [n for n in scans if n["Node Type"] == "Seq Scan"], kinds
    assert used and used <= set(hot.indexes), kinds


def executions_indexes(app: Flask) -> set[str]:
    return set(
        scalars(app, "SELECT indexname FROM pg_indexes WHERE tablename = 'action_executions'")
    )


def test_the_sample_is_the_backlog_of_the_three_queues(big):
    with big.app_context():
        found = plans.sample(db.session, timedelta(days=35))
        db.session.remove()
    assert found.queue_ids == backlog_queues(big) and found.queue_id == found.queue_ids[0]


def test_expiry_runs_its_per_queue_scan_once_whatever_the_statistics_say(big):
    """The statistics saw no pending row; the per-queue scan must still run once (an init
    plan), not once per pending row (a semi-join re-run for each)."""
    (expire,) = [hot for hot in plans.HOT if hot.statement is cleaner._EXPIRE]
    found = plan(big, expire)
    assert [n for n in nodes(found) if n.get("Parent Relationship") == "InitPlan"]


def test_the_services_connections_run_without_jit(big):
    with big.app_context():
        assert db.session.execute(text("SHOW jit")).scalar_one() == "off"
        db.session.remove()


def test_the_rewritten_reads_count_only_the_live_rows(big):
    """The listing, the metrics backlog and next_look answer from the live rows alone; the
    listing's rates are each queue's own or its override."""
    backlog = backlog_queues(big)
    with big.app_context():
        statuses = queue_admin.queue_statuses(db.session)
        rows = db.session.execute(BACKLOG_SQL).all()
        looks = [next_look.next_look(db.session, q, timedelta(0)) for q in backlog]
        db.session.remove()
    assert len(statuses) == IDLE_QUEUES + len(backlog)
    held = {s.id: (s.pending, s.claimed) for s in statuses if s.oldest_hold_expiry is not None}
    assert held == dict.fromkeys(backlog, (290, 10))
    assert {(s.pending, s.claimed) for s in statuses if s.id not in backlog} == {(0, 0)}
    rates = {(s.rate, s.overridden) for s in statuses if s.id != backlog[1]}
    assert rates == {("10 per 60s", False), ("10 per 1s", False)}
    assert [(s.rate, s.overridden) for s in statuses if s.id == backlog[1]] == [
        ("3 per 120s", True)
    ]
    assert sorted((row[0], row[4], row[5]) for row in rows) == sorted(
        [(q, "claimed", 10) for q in backlog] + [(q, "pending", 290) for q in backlog]
    )
    assert looks == [0.0, 0.0, 0.0]  # ready now: the window is open and rows are claimable


@pytest.mark.parametrize("statement", [queue_admin._STATUS, queue_admin._WITH_BACKLOG])
def test_the_listing_reads_the_live_rows_from_the_index_alone(big, statement):
    """The listing and the risk scan count the live rows with an index-only scan (no heap read
    per live row: 100,000 of them cost seconds that way) and read one row per busy queue by
    its primary key."""
    (hot,) = [hot for hot in plans.HOT if hot.statement is statement]
    scans = [
        (n["Node Type"], n.get("Index Name"))
        for n in nodes(plan(big, hot))
        if n.get("Relation Name") == "action_executions"
    ]
    assert sorted(scans) == [
        ("Index Only Scan", plans.LIVE),
        ("Index Scan", plans.PKEY),
    ], scans
