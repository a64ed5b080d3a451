"""/api/live, /api/ready and /api/health against real services, and what each failure looks
like."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg2

from tests.conftest import TEST_DATABASE_URL


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
