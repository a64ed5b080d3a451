"""Create, reset or drop a PostgreSQL database given its URL: the one helper that the tests, the
local stack, the smoke run and the benchmarks use.

The statements run on the server's `postgres` database with the URL's credentials. Names are
quoted as identifiers (never pasted into SQL), so any name is safe to pass; which databases may
be dropped is the caller's decision.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from psycopg2 import errors, sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor
from sqlalchemy.engine import make_url

CONNECT_TIMEOUT_SECONDS = 5


def connect(url: str, database: str | None = None) -> Connection:
    """A psycopg2 connection to the database of `url` (or to `database` on the same server).
    Accepts SQLAlchemy-style URLs (`postgresql+psycopg2://`) as well as plain ones."""
    parsed = make_url(url)
    return psycopg2.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname=database or parsed.database,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
    )


@contextmanager
def _server(url: str) -> Iterator[cursor]:
    """A cursor on the `postgres` database of `url`'s server, outside any transaction (CREATE
    and DROP DATABASE cannot run inside one)."""
    admin = connect(url, "postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            yield cur
    finally:
        admin.close()


def _name(url: str) -> str:
    name = make_url(url).database
    if not name:
        raise ValueError("the database URL names no database")
    return name


def ensure_database(url: str) -> bool:
    """Create the database of `url` unless it exists; True when this call created it. Two
    callers racing on a fresh server both succeed (one of them creates it)."""
    name = _name(url)
    with _server(url) as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is not None:
            return False
        try:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except (errors.DuplicateDatabase, errors.UniqueViolation):
            return False  # created by someone else meanwhile
        return True


def drop_database(url: str) -> None:
    """Drop the database of `url` if it exists, disconnecting its sessions (WITH (FORCE))."""
    with _server(url) as cur:
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        cur.execute(statement.format(sql.Identifier(_name(url))))


def reset_database(url: str) -> None:
    """The database of `url`, dropped if it existed and created empty."""
    drop_database(url)
    ensure_database(url)
