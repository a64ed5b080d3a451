"""Extension objects, unbound: nothing here opens a connection at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Session

db = SQLAlchemy(session_options={"expire_on_commit": False})
migrate = Migrate()


@contextmanager
def own_transaction() -> Iterator[Session]:
    """A session and transaction on a connection of its own, never the caller's `db.session`:
    commits on success, rolls back on an exception."""
    with Session(db.engine, expire_on_commit=False) as session, session.begin():
        yield session
