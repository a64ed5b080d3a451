"""Extension objects, unbound: nothing here opens a connection at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import redis
from flask import Flask, current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from throttle_app.config import Settings

db = SQLAlchemy(session_options={"expire_on_commit": False})
migrate = Migrate()


@contextmanager
def own_transaction() -> Iterator[Session]:
    """A session and transaction on a connection of its own, never the caller's `db.session`:
    commits on success, rolls back on an exception."""
    with Session(db.engine, expire_on_commit=False) as session, session.begin():
        yield session


def init_redis(app: Flask, url: str, timeout_seconds: float) -> None:
    """Create the app's Redis client (redis-py connects lazily, on first use)."""
    app.extensions["throttle_redis"] = redis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        health_check_interval=30,
    )


def redis_client() -> redis.Redis:
    """The current app's Redis client."""
    return current_app.extensions["throttle_redis"]


def current_settings() -> Settings:
    """The current app's settings (read once, in create_app)."""
    return current_app.config["THROTTLE_SETTINGS"]
