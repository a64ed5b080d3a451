"""The models and the migrations describe the same schema (no drift), the storage settings
included, and migration 0004 recovers from an interrupted concurrent index build."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from sqlalchemy.engine import make_url

from devtools import database
from tests.conftest import TEST_DATABASE_URL, service_env
from throttle_app import create_app
from throttle_app.config import Settings
from throttle_app.extensions import db
from throttle_app.ops.readiness import migration_heads


def test_models_and_migrations_do_not_drift(app):
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_the_test_database_is_at_the_single_head(app):
    from sqlalchemy import text

    assert len(migration_heads()) == 1
    with app.app_context():
        current = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert {current} == set(migration_heads())


def test_action_executions_carries_the_models_autovacuum_settings(app):
    from sqlalchemy import text

    from throttle_app.models import EXECUTIONS_AUTOVACUUM

    with app.app_context():
        options = db.session.execute(
            text("SELECT reloptions FROM pg_class WHERE relname = 'action_executions'")
        ).scalar_one()
        db.session.remove()
    assert dict(option.split("=", 1) for option in options) == EXECUTIONS_AUTOVACUUM


@pytest.fixture
def scratch_app() -> Iterator[Flask]:
    """An app on a database of its own (created here, dropped afterwards), not migrated yet."""
    name = f"{make_url(TEST_DATABASE_URL).database}_migrations_{uuid.uuid4().hex[:8]}"
    url = make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    database.ensure_database(url)
    app = create_app(Settings.from_env(service_env(DATABASE_URL=url)))
    try:
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()
        database.drop_database(url)


def index_state(app: Flask, name: str) -> tuple | None:
    """(valid, unique) of the index `name`, None when there is none."""
    from sqlalchemy import text

    with app.app_context():
        found = db.session.execute(
            text(
                "SELECT i.indisvalid, i.indisunique FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = :name"
            ),
            {"name": name},
        ).one_or_none()
        db.session.remove()
    return None if found is None else tuple(found)


LIVE, PENDING = "ix_action_executions_live", "ix_action_executions_queue_pending"  # 0004's


def test_0004_rebuilds_a_live_index_an_interrupted_build_left_invalid(scratch_app):
    """Downgrade to 0003 brings back the pending index and removes the live one and the
    settings; a concurrent build that failed leaves an invalid index of that name, which the
    upgrade drops and builds again before it drops the pending index."""
    from flask_migrate import downgrade, upgrade

    with scratch_app.app_context():
        upgrade()
        downgrade(revision="0003")
    assert (index_state(scratch_app, LIVE), index_state(scratch_app, PENDING)) == (
        None,
        (True, False),
    )
    conn = database.connect(scratch_app.config["SQLALCHEMY_DATABASE_URI"])
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT reloptions FROM pg_class WHERE relname = 'action_executions'")
            assert cur.fetchone() == (None,)
            cur.execute(
                "INSERT INTO action_executions (callback_id, queue_id, portal_id, workflow_id,"
                " action_id, max_throughput, period_seconds, hold_expires_at)"
                " SELECT 'cb-' || n, 1, 1, 1, '1', 5, 60, now() + interval '1 day'"
                " FROM generate_series(1, 2) n"
            )
            with pytest.raises(psycopg2.errors.UniqueViolation):  # two rows of queue 1
                cur.execute(
                    f"CREATE UNIQUE INDEX CONCURRENTLY {LIVE}"
                    " ON action_executions (queue_id) WHERE state IN ('pending', 'claimed')"
                )
    finally:
        conn.close()
    assert index_state(scratch_app, LIVE) == (False, True)
    with scratch_app.app_context():
        upgrade(revision="0004")
    assert (index_state(scratch_app, LIVE), index_state(scratch_app, PENDING)) == (
        (True, False),
        None,
    )


PRIORITY_LIVE = "ix_action_executions_live_priority"


def test_0006_swaps_the_live_index_for_the_priority_order_and_back(scratch_app):
    """Upgrade builds (queue_id, state, priority DESC, id) and drops the old live index;
    downgrade to 0005 brings the old one back; a second upgrade ends where the first did."""
    from flask_migrate import downgrade, upgrade

    with scratch_app.app_context():
        upgrade()
    assert (index_state(scratch_app, PRIORITY_LIVE), index_state(scratch_app, LIVE)) == (
        (True, False),
        None,
    )
    with scratch_app.app_context():
        downgrade(revision="0005")
    assert (index_state(scratch_app, PRIORITY_LIVE), index_state(scratch_app, LIVE)) == (
        None,
        (True, False),
    )
    with scratch_app.app_context():
        upgrade()
    assert index_state(scratch_app, PRIORITY_LIVE) == (True, False)
