"""The models and the migrations describe the same schema (no drift)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

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
