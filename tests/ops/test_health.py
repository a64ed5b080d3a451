"""/api/live, /api/ready and /api/health against real services, what each failure looks like,
and how often the probes reach the database."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import psycopg2
from sqlalchemy import event

from tests.conftest import TEST_DATABASE_URL
from throttle_app.extensions import db


def test_live_answers_without_dependencies(make_app):
    app = make_app(
        database_url="postgresql+psycopg2://postgres@127.0.0.1:1/x",
        redis_url="redis://127.0.0.1:1/0",
    )
    assert app.test_client().get("/api/live").json == {"status": "ok"}


def test_health_is_ok_when_everything_is_ready(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json["checks"] == {"database": True, "schema": True, "redis": True}


def test_health_fails_when_redis_is_down(make_app):
    client = make_app(redis_url="redis://127.0.0.1:1/0", redis_timeout_seconds=0.5).test_client()
    response = client.get("/api/health")
    assert response.status_code == 503
    assert response.json["checks"]["redis"] is False
    assert "redis" in response.json["error"]


def test_health_fails_when_the_database_is_down(make_app):
    app = make_app(
        database_url="postgresql+psycopg2://postgres@127.0.0.1:1/throttle_test",
        db_connect_timeout_seconds=1,
    )
    response = app.test_client().get("/api/health")
    assert response.status_code == 503
    assert response.json["checks"]["database"] is False


@contextlib.contextmanager
def schema_version(version: str) -> Iterator[None]:
    """Point alembic_version at `version` for the `with` block, then back at the real head."""
    conn = psycopg2.connect(TEST_DATABASE_URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version_num FROM alembic_version")
            (head,) = cur.fetchone()
            cur.execute("UPDATE alembic_version SET version_num = %s", (version,))
            try:
                yield
            finally:
                cur.execute("UPDATE alembic_version SET version_num = %s", (head,))
    finally:
        conn.close()


def test_health_fails_when_the_schema_is_behind(client):
    with schema_version("0001"):  # an older revision of this release
        response = client.get("/api/health")
        ready = client.get("/api/ready")
    assert response.status_code == 503
    assert response.json["checks"] == {"database": True, "schema": False, "redis": True}
    assert "flask db upgrade" in response.json["error"]
    assert ready.status_code == 503 and ready.json["checks"]["schema"] == "behind"


def test_a_schema_ahead_of_this_release_keeps_it_ready(client):
    """The chart migrates before new pods start, and a rollback leaves the schema ahead: the old
    pods must stay in the Service (migrations are expand/contract)."""
    with schema_version("9999_from_a_newer_release"):
        ready = client.get("/api/ready")
        health = client.get("/api/health")
    assert ready.status_code == 200 and ready.json["checks"]["schema"] == "ahead"
    assert health.status_code == 503 and "newer than this release" in health.json["error"]


def test_ready_needs_the_database_but_not_redis(make_app):
    without_redis = make_app(redis_url="redis://127.0.0.1:1/0", redis_timeout_seconds=0.5)
    assert without_redis.test_client().get("/api/ready").status_code == 200
    without_db = make_app(
        database_url="postgresql+psycopg2://postgres@127.0.0.1:1/throttle_test",
        db_connect_timeout_seconds=1,
    )
    response = without_db.test_client().get("/api/ready")
    assert response.status_code == 503 and response.json["checks"]["database"] is False


@contextlib.contextmanager
def database_checks(app) -> Iterator[list[str]]:
    """Every statement that reads the schema version, as sent to PostgreSQL by the app's engine."""
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        if "alembic_version" in statement:
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_100_probes_within_the_window_make_one_database_check(make_app):
    app = make_app(health_cache_ms=30_000)
    client = app.test_client()
    with database_checks(app) as seen:
        started = time.monotonic()
        answers = [client.get("/api/health" if n % 2 else "/api/ready") for n in range(100)]
        elapsed = time.monotonic() - started
    assert elapsed < 30, "the machine is too slow for this window"
    assert [a.status_code for a in answers] == [200] * 100
    assert len(seen) == 1


def test_without_a_cache_every_probe_checks(make_app):
    app = make_app(health_cache_ms=0)
    client = app.test_client()
    with database_checks(app) as seen:
        for _ in range(5):
            assert client.get("/api/ready").status_code == 200
    assert len(seen) == 5


def test_a_failure_is_reported_once_the_cached_answer_expires(make_app):
    window = 2.0
    client = make_app(health_cache_ms=int(window * 1000)).test_client()
    assert client.get("/api/health").status_code == 200
    checked = time.monotonic()
    with schema_version("0001"):
        cached = client.get("/api/health")
        assert time.monotonic() - checked < window, "the machine is too slow for this window"
        assert cached.status_code == 200  # within the window: the cached answer
        time.sleep(max(0.0, checked + window + 0.1 - time.monotonic()))
        failing = client.get("/api/health")
        ready = client.get("/api/ready")
    assert failing.status_code == 503 and "flask db upgrade" in failing.json["error"]
    assert ready.status_code == 503  # the same failed check, now cached, answers both
    time.sleep(window + 0.1)
    assert client.get("/api/health").status_code == 200  # recovery shows after the window too
