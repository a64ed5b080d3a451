"""Readiness checks: PostgreSQL reachable, schema at the migrations' head, Redis reachable.

Each check has its own short timeout and reports a reason instead of raising.
"""

from __future__ import annotations

import functools
from pathlib import Path

import redis
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


@functools.cache
def migration_heads() -> frozenset[str]:
    """The head revision(s) of the migrations shipped with this code."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def check_database(engine: Engine, timeout_seconds: float) -> tuple[bool, bool, str | None]:
    """Return (database ok, schema at head, reason)."""
    try:
        with engine.connect() as conn:
            conn.execute(text(f"SET LOCAL statement_timeout = {int(timeout_seconds * 1000)}"))
            try:
                current = set(
                    conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
                )
            except Exception:
                return True, False, "schema is not migrated (run `flask db upgrade`)"
            finally:
                conn.rollback()
    except Exception as exc:
        return False, False, f"database unreachable: {type(exc).__name__}"
    if current != migration_heads():
        return True, False, "schema is not at the latest migration (run `flask db upgrade`)"
    return True, True, None


def check_redis(client: redis.Redis) -> tuple[bool, str | None]:
    """Ping Redis; the client's own socket timeouts bound the wait."""
    try:
        client.ping()
        return True, None
    except Exception as exc:
        return False, f"redis unreachable: {type(exc).__name__}"
