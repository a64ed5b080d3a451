"""The statements on the release, scrape, listing and cleaner paths, with the indexes each must
read, and their EXPLAIN (ANALYZE, BUFFERS) on the benchmark's database.

`HOT` is the list that tests/release/test_query_plans.py checks; `main` prints each statement's
plan as PostgreSQL runs it on whatever the benchmark database holds (bench_release.py or
bench_cleaner.py with --terminal-rows leave it filled). Each statement runs in a transaction that
is rolled back, so the UPDATE and DELETE statements change nothing.

    python scripts/bench_plans.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session

from throttle_app.models import TERMINAL_STATES
from throttle_app.ops.metrics_scrape import BACKLOG_SQL
from throttle_app.release import claims, cleaner, next_look, queue_admin

LIVE = "ix_action_executions_live_priority"
CLAIMED = "ix_action_executions_claimed"
FINISHED = "ix_action_executions_finished"
PKEY = "action_executions_pkey"


@dataclass(frozen=True)
class Sample:
    """What the statements' parameters are taken from: the queue with the largest backlog, every
    queue with one, and the purge's cutoff."""

    queue_id: int
    queue_ids: list[int]
    cutoff: datetime


@dataclass(frozen=True)
class Hot:
    name: str
    statement: TextClause
    params: Callable[[Sample], dict]
    indexes: tuple[str, ...]  # the only ones its plan may read action_executions through


HOT = [
    Hot("next_look", next_look._NEXT_LOOK, lambda s: {"queue_id": s.queue_id}, (LIVE, CLAIMED)),
    Hot(
        "next_looks (cleaner)",
        next_look._NEXT_LOOKS,
        lambda s: {"queue_ids": s.queue_ids},
        (LIVE, CLAIMED),
    ),
    Hot(
        "claim rows",
        claims._CLAIM_ROWS,
        lambda s: {"owner": uuid.uuid4(), "lease": 60, "queue_id": s.queue_id, "limit": 100},
        (LIVE, PKEY),
    ),
    Hot(
        "recompute next release",
        claims.RECOMPUTE_NEXT_RELEASE,
        lambda s: {"queue_id": s.queue_id},
        (CLAIMED, LIVE),
    ),
    Hot(
        "window ready at",
        claims._WINDOW_READY_AT,
        lambda s: {"queue_id": s.queue_id, "period": 60},
        (CLAIMED, LIVE),
    ),
    Hot("metrics backlog", BACKLOG_SQL, lambda s: {}, (LIVE,)),
    Hot("queue listing", queue_admin._STATUS, lambda s: {}, (LIVE, PKEY)),
    Hot(
        "queues with a backlog (risk scan)",
        queue_admin._WITH_BACKLOG,
        lambda s: {},
        (LIVE, PKEY),
    ),
    Hot(
        "last failures (/ops page)",
        queue_admin._LAST_FAILURES,
        lambda s: {"ids": s.queue_ids, "scan": queue_admin.FAILURE_SCAN},
        (LIVE,),
    ),
    Hot("reclaim expired leases", cleaner._RECLAIM, lambda s: {}, (CLAIMED, LIVE, PKEY)),
    Hot("expire holds", cleaner._EXPIRE, lambda s: {"limit": 1000}, (LIVE, PKEY)),
    Hot("queues with work", cleaner._QUEUES_WITH_WORK, lambda s: {}, (LIVE,)),
    Hot(
        "purge batch",
        cleaner._PURGE_BATCH,
        lambda s: {
            "after": datetime.min.replace(tzinfo=UTC),
            "cutoff": s.cutoff,
            "batch": 5000,
            "terminal": list(TERMINAL_STATES),
        },
        (FINISHED,),
    ),
]


def sample(session: Session, retention: timedelta) -> Sample:
    """Parameters from the database's current rows."""
    backlog = session.execute(
        text(
            "SELECT queue_id FROM action_executions WHERE state = 'pending'"
            " GROUP BY queue_id ORDER BY count(*) DESC, queue_id"
        )
    ).scalars()
    queue_ids = list(backlog)
    cutoff = session.execute(
        text("SELECT now() - make_interval(secs => :keep)"), {"keep": retention.total_seconds()}
    ).scalar_one()
    session.rollback()
    return Sample(queue_ids[0] if queue_ids else 0, sorted(queue_ids), cutoff)


def explain(session: Session, hot: Hot, params: dict, options: str = "FORMAT JSON") -> list:
    """EXPLAIN (`options`) of `hot` with `params`, rolled back (ANALYZE runs the statement)."""
    try:
        return [
            row[0]
            for row in session.execute(text(f"EXPLAIN ({options}) {hot.statement.text}"), params)
        ]
    finally:
        session.rollback()


def main() -> None:
    from devtools.bench.environment import DB, REDIS, service_env
    from throttle_app import create_app
    from throttle_app.config import Settings
    from throttle_app.extensions import db

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="statement names (default: all)")
    args = parser.parse_args()
    settings = Settings.from_env(service_env(DB, REDIS))
    app = create_app(settings)
    with app.app_context():
        session = db.session
        found = sample(session, timedelta(days=settings.retention_days))
        for hot in HOT:
            if args.only and hot.name not in args.only:
                continue
            lines = explain(session, hot, hot.params(found), "ANALYZE, BUFFERS")
            print(f"--- {hot.name}\n" + "\n".join(lines))
        db.session.remove()
