"""devtools.database creates, resets and drops databases on the test server (real PostgreSQL),
each test on a throwaway database of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from devtools import database
from tests.conftest import TEST_DATABASE_URL


def exists(url: str) -> bool:
    admin = database.connect(url, "postgres")
    try:
        with admin, admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (make_url(url).database,))
            return cur.fetchone() is not None
    finally:
        admin.close()


@pytest.fixture
def throwaway() -> Iterator[str]:
    """A URL naming a database that does not exist yet (a quote in its name, on purpose);
    dropped afterwards."""
    name = f'{make_url(TEST_DATABASE_URL).database}_tool_{uuid.uuid4().hex[:8]}"x'
    url = make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    database.drop_database(url)


def test_ensure_creates_once(throwaway: str) -> None:
    assert database.ensure_database(throwaway) is True
    assert exists(throwaway)
    assert database.ensure_database(throwaway) is False


def test_reset_empties_an_existing_database(throwaway: str) -> None:
    database.ensure_database(throwaway)
    conn = database.connect(throwaway)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE leftover (id int)")
    conn.close()
    database.reset_database(throwaway)
    conn = database.connect(throwaway)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'leftover'")
        assert cur.fetchone() == (0,)
    conn.close()


def test_drop_disconnects_sessions_and_tolerates_a_missing_database(throwaway: str) -> None:
    database.ensure_database(throwaway)
    session = database.connect(throwaway)  # still open: WITH (FORCE) ends it
    database.drop_database(throwaway)
    assert not exists(throwaway)
    session.close()
    database.drop_database(throwaway)  # nothing to drop: no error


def test_a_url_without_a_database_is_refused() -> None:
    with pytest.raises(ValueError, match="names no database"):
        database.ensure_database("postgresql://postgres@127.0.0.1:5432")
