"""Readiness checks: PostgreSQL reachable, the schema's migration state, Redis reachable.

Each check has its own short timeout and reports a reason instead of raising.

The schema is CURRENT (at this code's head), BEHIND (at an older revision this code knows, or
not migrated) or AHEAD (at a revision this code does not know: a newer release migrated, as the
chart's pre-upgrade hook does before the new pods start, or a rollback left it there). Migrations
are expand/contract, so this code still works on a schema that is AHEAD.
"""

from __future__ import annotations

import functools
from pathlib import Path

import redis
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
CURRENT, BEHIND, AHEAD = "current", "behind", "ahead"


@functools.cache
def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config)


@functools.cache
def migration_heads() -> frozenset[str]:
    """The head revision(s) of the migrations shipped with this code."""
    return frozenset(_scripts().get_heads())


@functools.cache
def known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


def schema_state(current: set[str]) -> str:
    """CURRENT, BEHIND or AHEAD (module docstring) for the database's alembic versions."""
    if current == migration_heads():
        return CURRENT
    if current and not current <= known_revisions():
        return AHEAD
    return BEHIND


def check_database(engine: Engine, timeout_seconds: float) -> tuple[bool, str, str | None]:
    """Return (database ok, schema state, reason); the reason is None only when CURRENT."""
    try:
        with engine.connect() as conn:
            conn.execute(text(f"SET LOCAL statement_timeout = {int(timeout_seconds * 1000)}"))
            try:
                current = set(
                    conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
                )
            except Exception:
                return True, BEHIND, "schema is not migrated (run `flask db upgrade`)"
            finally:
                conn.rollback()
    except Exception as exc:
        return False, BEHIND, f"database unreachable: {type(exc).__name__}"
    state = schema_state(current)
    if state == BEHIND:
        return True, state, "schema is not at the latest migration (run `flask db upgrade`)"
    if state == AHEAD:
        return True, state, "schema is at a migration newer than this release"
    return True, state, None


def check_redis(client: redis.Redis) -> tuple[bool, str | None]:
    """Ping Redis; the client's own socket timeouts bound the wait."""
    try:
        client.ping()
        return True, None
    except Exception as exc:
        return False, f"redis unreachable: {type(exc).__name__}"
