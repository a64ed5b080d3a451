"""Time the reads whose cost grows with the tables: a release job's `next_look`, the metrics
scrape and its backlog query, the queue listing (`flask throttle queues`), the expiry-risk scan
and the operator page (`GET /ops`, its first and last page), each through the service's own
code on the benchmark's database.

Each read runs `repeat` times; the first run is reported apart (the coldest, right after the
tables were written), then the median and the 90th percentile of all runs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from base64 import b64encode
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import text

from devtools import ROOT
from throttle_app.extensions import db
from throttle_app.ops.metrics_scrape import BACKLOG_SQL
from throttle_app.ops.ops_listing import PAGE_SIZE
from throttle_app.release import next_look, queue_admin
from throttle_app.release.risk_scan import queues_at_risk

METRICS_TOKEN = "bench-metrics-token-0123456789abcdef"
OPS_PASSWORD = "bench-ops-password-0123456789abcdef"  # THROTTLE_DASHBOARD_PASSWORD: /ops
# The variables the timed reads need: /metrics and /ops open.
READS_ENV = {"THROTTLE_METRICS_TOKEN": METRICS_TOKEN, "THROTTLE_DASHBOARD_PASSWORD": OPS_PASSWORD}
METRICS_HEADERS = {"Authorization": f"Bearer {METRICS_TOKEN}"}
OPS_HEADERS = {"Authorization": "Basic " + b64encode(f"admin:{OPS_PASSWORD}".encode()).decode()}


def now() -> datetime:
    return datetime.now(UTC)


def timings(read: Callable[[], object], repeat: int) -> list[float]:
    """Milliseconds of `repeat` calls of `read`."""
    spent = []
    for _ in range(repeat):
        started = time.perf_counter()
        read()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def p90(values: list[float]) -> float:
    """The 90th percentile (the value itself for a single one)."""
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def measure(name: str, read: Callable[[], object], repeat: int, per: int = 1) -> None:
    """Print the first, median and p90 milliseconds of `repeat` calls of `read` (each divided
    by `per`), or how the first failing call failed and after how long."""
    started = time.perf_counter()
    try:
        spent = [t / per for t in timings(read, repeat)]
    except Exception as exc:  # a statement timeout is a result here, not a crash
        elapsed = time.perf_counter() - started
        print(f"{name}: FAILED after {elapsed:.1f}s: {type(exc).__name__}: {str(exc)[:120]!r}")
        return
    print(
        f"{name}: first {spent[0]:.1f} ms, median {statistics.median(spent):.1f} ms,"
        f" p90 {p90(spent):.1f} ms ({len(spent)} runs)"
    )


def report(app: Flask, env: dict[str, str], queues: list[int], repeat: int = 20) -> None:
    """Print the timings of every read for `queues` (the ones with a backlog)."""
    settings = app.config["THROTTLE_SETTINGS"]
    lead = timedelta(milliseconds=settings.release_lead_ms)
    with app.app_context():
        session = db.session
        try:
            count = session.execute(text("SELECT count(*) FROM throttle_queues")).scalar()
            session.rollback()
            measure(
                f"next_look per release job ({len(queues)} queues in turn)",
                lambda: [next_look.next_look(session, q, lead) for q in queues],
                repeat,
                per=len(queues),
            )
            session.rollback()
            measure(
                "metrics backlog query",
                lambda: session.execute(BACKLOG_SQL).all(),
                repeat,
            )
            session.rollback()
            client = app.test_client()
            measure("GET /metrics (whole scrape)", lambda: scrape(client), repeat)
            measure(
                f"queue listing of {count:,} queues (queue_statuses)",
                lambda: queue_admin.queue_statuses(session),
                repeat,
            )
            session.rollback()
            measure(
                "queues at risk (the scrape's and the cleaner's risk scan)",
                lambda: queues_at_risk(session, now()),
                repeat,
            )
            session.rollback()
            last = -(-count // PAGE_SIZE)
            for page in (1, last):
                measure(
                    f"GET /ops?page={page} ({PAGE_SIZE} of {count:,} queues)",
                    lambda page=page: page_of(client, f"/ops?page={page}"),
                    repeat,
                )
        finally:
            db.session.remove()
    command = [sys.executable, "-m", "flask", "--app", "throttle_app", "throttle", "queues"]
    measure(
        "`flask throttle queues` (whole process)",
        lambda: subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True),
        3,
    )


def page_of(client, path: str) -> None:
    """GET an /ops page with the operator credentials; raise unless it lists queues."""
    response = client.get(path, headers=OPS_HEADERS)
    if response.status_code != 200 or b"data-queue-key" not in response.data:
        raise RuntimeError(f"{path} answered {response.status_code} without queues")


def scrape(client) -> None:
    """GET /metrics with the token; raise unless the backlog came from PostgreSQL."""
    response = client.get("/metrics", headers=METRICS_HEADERS)
    if response.status_code != 200:
        raise RuntimeError(f"/metrics answered {response.status_code}")
    if 'metrics_source_up{source="postgres"} 1.0' not in response.get_data(as_text=True):
        raise RuntimeError("/metrics answered without the backlog (postgres source down)")
