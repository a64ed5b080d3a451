"""Queues at expiry risk, read from PostgreSQL at a chosen instant: the cleaner's warning (one
log line per queue per hour), `flask throttle queues` and the `throttle_queues_at_risk` gauge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.exposition import generate_latest

from tests.support.log_capture import Records, captured
from tests.support.ops_helpers import held_queue, portal
from throttle_app.extensions import db
from throttle_app.ops.metrics_scrape import scrape_registry
from throttle_app.release import cleaner
from throttle_app.release.risk_scan import WARNED_KEY, queues_at_risk
from throttle_app.release.schedule import ReleaseSchedule
from throttle_app.services import services_of

NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)


@pytest.fixture
def held(app):
    """Portal 7 installed; three queues: 500 at 10/hour with the oldest hold 30 hours away
    (drained in 49: at risk now), 20 at 10/hour (drained in 1 hour: safe), one empty."""
    portal(app, 7)
    risky = held_queue(app, "7:1:1", 500, (10, 3600), NOW + 30 * HOUR)
    safe = held_queue(app, "7:2:1", 20, (10, 3600), NOW + 30 * HOUR)
    held_queue(app, "7:3:1", 0, (10, 3600), NOW)
    return app, risky, safe


@pytest.fixture
def risk_log() -> Iterator[Records]:
    """What the risk scan's logger emits during the test."""
    with captured("throttle_app.release.risk_scan") as records:
        yield records


def at_risk_ids(app, now: datetime) -> list[int]:
    with app.app_context():
        found = [status.id for status, _ in queues_at_risk(db.session, now)]
        db.session.remove()
    return found


def test_the_scan_finds_the_queue_at_risk_and_moves_with_the_clock(held):
    app, risky, safe = held
    assert at_risk_ids(app, NOW) == [risky]
    # 19 hours later (nothing released meanwhile), the safe queue's 2 windows still fit in the
    # 11 hours left; at 29.5 hours they no longer do.
    assert at_risk_ids(app, NOW + 19 * HOUR) == [risky]
    assert at_risk_ids(app, NOW + 29.5 * HOUR) == [risky, safe]
    # Before the holds come that close, and with a smaller backlog, nothing is at risk.
    with app.app_context():
        db.session.execute(db.text("DELETE FROM action_executions WHERE id % 10 <> 0"))
        db.session.commit()
        db.session.remove()
    assert at_risk_ids(app, NOW) == []


def test_the_stored_policy_decides(held):
    """The safe queue may release only from 40 hours on (its stored start time), one every 6
    minutes (spread): its holds end at 30 hours, so it is at risk, and its policy line says so."""
    app, risky, safe = held
    with app.app_context():
        db.session.execute(
            db.text(
                "UPDATE throttle_queues SET start_at = :at, release_mode = 'spread' WHERE id = :q"
            ),
            {"at": NOW + 40 * HOUR, "q": safe},
        )
        db.session.commit()
        found = queues_at_risk(db.session, NOW)
        db.session.remove()
    assert [status.id for status, _ in found] == [risky, safe]
    status, risk = found[1]
    assert status.policy.startswith("10 per 1 h, spread, from ")
    assert risk.drain_eta == NOW + 40 * HOUR + 19 * timedelta(minutes=6)


def test_a_paused_queue_is_judged_as_if_resumed_now(held):
    app, risky, safe = held
    with app.app_context():
        db.session.execute(db.text("UPDATE throttle_queues SET paused = true"))
        db.session.commit()
        db.session.remove()
    assert at_risk_ids(app, NOW) == [risky]  # the safe one's pause alone is no alarm
    assert at_risk_ids(app, NOW + 29.5 * HOUR) == [risky, safe]  # ... until it would be


def run_clean(app, now: datetime) -> cleaner.CleanReport:
    with app.app_context():
        try:
            schedule = ReleaseSchedule(services_of(app).redis)
            return cleaner.clean(db.session, schedule, timedelta(0), now=now)
        finally:
            db.session.remove()


def test_the_cleaner_warns_once_per_queue_per_hour(held, redis_conn, risk_log):
    app, risky, _ = held
    assert run_clean(app, NOW).at_risk == 1
    (line,) = risk_log.messages
    assert risk_log.records[0].levelname == "WARNING"
    assert f"queue {risky} (7:1:1) at risk: 500 held" in line
    assert f"expire unthrottled at {(NOW + 30 * HOUR).isoformat()}" in line
    run_clean(app, NOW + timedelta(minutes=1))
    assert len(risk_log.messages) == 1  # within the hour: no second line
    assert 3590 < redis_conn.ttl(WARNED_KEY % risky) <= 3600
    redis_conn.delete(WARNED_KEY % risky)  # the hour has passed
    run_clean(app, NOW + HOUR)
    assert len(risk_log.messages) == 2


def test_a_failing_risk_scan_does_not_fail_the_cleaner(held, monkeypatch):
    app, _, _ = held

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cleaner, "warn_at_risk", broken)
    report = run_clean(app, NOW)
    assert report.at_risk is None and report.woken == 2


def test_the_cli_lists_the_risk(held):
    app, risky, safe = held
    runner = app.test_cli_runner()
    result = runner.invoke(args=["throttle", "queues", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in map(json.loads, result.output.splitlines())}
    assert rows[risky]["at_risk"] is True and rows[safe]["at_risk"] is False
    assert rows[risky]["expires_unthrottled_at"] == (NOW + 30 * HOUR).isoformat()
    assert rows[risky]["policy"] == "10 per 1 h"
    table = runner.invoke(args=["throttle", "queues"]).output
    (risky_line,) = [line for line in table.splitlines() if "7:1:1" in line]
    assert "AT RISK" in risky_line
    assert "AT RISK" not in next(line for line in table.splitlines() if "7:2:1" in line)


def test_the_gauge_counts_the_queues_at_risk(held):
    app, _, _ = held
    with app.app_context():
        engine, redis_conn = db.engine, services_of(app).redis

        def gauge(now: datetime) -> str:
            text = generate_latest(scrape_registry(engine, redis_conn, 2000, lambda: now))
            return next(
                line
                for line in text.decode().splitlines()
                if line.startswith("throttle_queues_at_risk ")
            )

        assert gauge(NOW) == "throttle_queues_at_risk 1.0"
        assert gauge(NOW + 29.5 * HOUR) == "throttle_queues_at_risk 2.0"
        assert gauge(NOW - 40 * HOUR) == "throttle_queues_at_risk 0.0"


def test_the_gauge_is_on_metrics(make_app, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    token = "metrics-token-for-tests-0123456789"
    app = make_app(metrics_token=token)
    portal(app, 7)
    held_queue(app, "7:1:1", 500, (10, 3600), datetime.now(UTC) + HOUR)
    text = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert "throttle_queues_at_risk 1.0" in text.get_data(as_text=True)
