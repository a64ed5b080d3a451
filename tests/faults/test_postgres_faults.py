"""Invariant 1 while PostgreSQL goes away mid-burst: the real web (gunicorn) under a steady
webhook load, while its connections to PostgreSQL are cut and PostgreSQL "restarts".

- through the TCP proxy on the shared server: every connection is reset (a cut), then every
  connection is reset and new ones are refused for a few seconds (what the service sees of a
  restart), then accepted again;
- on a private server of its own: a real crash (`pg_ctl stop -m immediate`, no checkpoint) and
  a start with crash recovery.

Each proves: every 200 was committed (its callbackId is in action_executions afterwards, read
straight from PostgreSQL), every other answer was a 503 with a Retry-After, and every request
that started 5 s or more after PostgreSQL's return was answered 200.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy.engine import make_url

from tests.conftest import TEST_DATABASE_URL, connect_test_database, service_env, truncate_all
from tests.faults.invariants import acknowledged, answers_other_than_200_or_503, rows_for
from tests.faults.webhook_load import Delivery, LoadPlan, LoadProcess, QueueLoad
from tests.support.processes import (
    PrivatePostgres,
    free_port,
    kill_group,
    postgres_bin_dir,
    private_postgres,
    start_role,
    wait_for_http,
)
from tests.support.tcp_proxy import TcpProxy
from throttle_app import create_app
from throttle_app.config import Settings
from throttle_app.extensions import db

pytestmark = pytest.mark.slow

RECOVERY_SECONDS = 5.0  # the bound: intake recovers within 5 s of PostgreSQL's return
LOAD = QueueLoad("pg", workflow_id=301, max_throughput=100, seconds=1, per_second=60)
LOAD_SECONDS = 12.0


def run_burst(
    tmp_path: Path, database_url: str, faults: list[tuple[float, Callable[[], None]]]
) -> tuple[list[Delivery], dict[str, float]]:
    """Start the web on `database_url`, send the load, run each fault at its offset (seconds
    after the load started); return every delivery and when each fault ran (time.time())."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(
        DATABASE_URL=database_url,
        PORT=str(port),
        PUBLIC_BASE_URL=base,
        THROTTLE_WEB_WORKERS="2",
        THROTTLE_LOG_LEVEL="WARNING",
    )
    web = start_role("web", env, log_path=tmp_path / "web.log")
    load = None
    ran: dict[str, float] = {}
    try:
        wait_for_http(f"{base}/api/health", process=web)
        start_at = time.time() + 3.0  # the load process is spawned meanwhile
        plan = LoadPlan(base, (LOAD,), LOAD_SECONDS, start_at, concurrency=24)
        load = LoadProcess(plan).start()
        for offset, fault in faults:
            time.sleep(max(0.0, start_at + offset - time.time()))
            fault()
            ran[fault.__name__] = time.time()
        deliveries = load.result()
        assert web.poll() is None, "the web process died"
    finally:
        if load is not None:
            load.close()
        kill_group(web, signal.SIGTERM)
    return deliveries, ran


def check_intake(deliveries: list[Delivery], database_url: str, returned_at: float) -> dict:
    """The invariants of the module docstring; returns the figures for the report."""
    assert len(deliveries) >= LOAD_SECONDS * LOAD.per_second * 0.9
    wrong = answers_other_than_200_or_503(deliveries)
    assert wrong == [], f"{len(wrong)} answers were neither 200 nor 503 + Retry-After: {wrong[:3]}"
    ok = acknowledged(deliveries)
    stored = rows_for(database_url, ok)
    lost = ok - set(stored)
    assert not lost, (
        f"{len(lost)} executions answered 200 are not in PostgreSQL: {sorted(lost)[:5]}"
    )
    refused = [d for d in deliveries if d.status != 200]
    assert refused, "no request was refused: the fault never reached the service"
    after = [d for d in deliveries if d.started >= returned_at]
    late_failures = [d for d in after if d.status != 200]
    last_failure = max((d.started for d in late_failures), default=returned_at) - returned_at
    first_ok = min(d.finished for d in after if d.status == 200) - returned_at
    assert last_failure < RECOVERY_SECONDS, (
        f"a request started {last_failure:.2f}s after PostgreSQL returned was still refused"
    )
    assert all(d.status == 200 for d in after if d.started >= returned_at + RECOVERY_SECONDS)
    figures = {
        "deliveries": len(deliveries),
        "answered_200": sum(d.status == 200 for d in deliveries),
        "answered_503": len(refused),
        "first_200_after_return_s": round(first_ok, 3),
        "last_503_started_after_return_s": round(last_failure, 3),
    }
    print("postgres fault figures:", figures)
    return figures


def test_cut_and_refused_postgres_loses_no_acknowledged_execution(migrated_database, tmp_path):
    truncate_all()
    upstream = make_url(TEST_DATABASE_URL)
    with TcpProxy(upstream.port or 5432) as proxy:
        through_proxy = str(
            upstream.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        )

        def cut() -> None:  # mid-burst: every connection reset, the server still there
            assert proxy.reset_all() > 0

        def restart_begins() -> None:  # every connection reset, new ones refused
            proxy.refuse()

        def postgres_returns() -> None:
            proxy.accept()

        deliveries, ran = run_burst(
            tmp_path,
            through_proxy,
            [(2.0, cut), (4.0, restart_begins), (6.5, postgres_returns)],
        )
    outage = [d for d in deliveries if ran["restart_begins"] + 0.5 <= d.started]
    outage = [d for d in outage if d.finished <= ran["postgres_returns"]]
    assert outage and all(d.status == 503 for d in outage), "answered 200 while refused"
    check_intake(deliveries, TEST_DATABASE_URL, ran["postgres_returns"])


def _migrate(database_url: str) -> None:
    app = create_app(Settings.from_env(service_env(DATABASE_URL=database_url)))
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture
def private_server() -> Iterator[PrivatePostgres]:
    if postgres_bin_dir() is None:
        pytest.skip("no PostgreSQL server binaries to start a private cluster with")
    with private_postgres() as server:
        yield server


def test_crashed_and_restarted_postgres_loses_no_acknowledged_execution(private_server, tmp_path):
    server = private_server
    admin = connect_test_database(server.url())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("CREATE DATABASE throttle")
    admin.close()
    url = server.url("throttle")
    _migrate(url)

    def crash() -> None:  # no checkpoint: the next start recovers from the WAL
        server.stop("immediate")

    def postgres_returns() -> None:
        time.sleep(2.0)
        server.start()  # returns once recovery is done and it accepts connections

    deliveries, ran = run_burst(tmp_path, url, [(3.0, crash), (3.0, postgres_returns)])
    check_intake(deliveries, url, ran["postgres_returns"])
