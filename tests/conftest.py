"""Shared fixtures: real PostgreSQL and real Redis, never fakes.

TEST_DATABASE_URL (default: the `throttle_test` database on 127.0.0.1; created and migrated on
first use) and TEST_REDIS_URL (default: Redis database 15 on 127.0.0.1) point the suite at its
services. Every test starts from empty tables and an empty Redis database.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Callable, Iterator

import pytest
import redis
from flask import Flask

from devtools import database as database_tools
from fake_hubspot import FakeHubSpot
from throttle_app import create_app
from throttle_app.config import Settings
from throttle_app.extensions import db
from throttle_app.services import services_of

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/throttle_test"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_CLIENT_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
TEST_KEY = base64.b64encode(b"k" * 32).decode()
TEST_CONFIG_TOKEN = "test-config-token-0123456789abcdef"  # service_env's CONFIG_API_TOKEN
CONFIG_AUTH = {"Authorization": f"Bearer {TEST_CONFIG_TOKEN}"}
TABLES = ("action_executions", "throttle_queues", "throttle_configs", "oauth_tokens")


def service_env(**overrides: str) -> dict[str, str]:
    """A complete environment for Settings.from_env, pointing at the test services.

    Development mode is on: the suite's HubSpot is an http:// fake on loopback, and most tests
    let the signed URL come from the request (no PUBLIC_BASE_URL). Every secret is as long as
    production requires, so `THROTTLE_DEV_MODE="false", PUBLIC_BASE_URL=...` is a production
    environment (tests/test_config.py checks it)."""
    env = {
        "DATABASE_URL": TEST_DATABASE_URL,
        "REDIS_URL": TEST_REDIS_URL,
        "HUBSPOT_CLIENT_ID": "test-client-id",
        "HUBSPOT_CLIENT_SECRET": TEST_CLIENT_SECRET,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "TOKEN_ENCRYPTION_KEY": TEST_KEY,
        "CONFIG_API_TOKEN": TEST_CONFIG_TOKEN,
        "THROTTLE_LOG_JSON": "false",
        "THROTTLE_DEV_MODE": "true",
    }
    env.update(overrides)
    return env


def connect_test_database(url: str = TEST_DATABASE_URL, database: str | None = None):
    """A psycopg2 connection to the test database (or another `database` on its server)."""
    return database_tools.connect(url, database)


@pytest.fixture(scope="session")
def migrated_database() -> str:
    """The test database, created if missing and upgraded to the migrations' head."""
    from flask_migrate import upgrade

    database_tools.ensure_database(TEST_DATABASE_URL)
    app = create_app(Settings.from_env(service_env()))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return TEST_DATABASE_URL


def truncate_all(url: str = TEST_DATABASE_URL) -> None:
    conn = connect_test_database(url)
    with conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    conn.close()


@pytest.fixture
def settings(migrated_database: str) -> Settings:
    return Settings.from_env(service_env())


@pytest.fixture
def make_app(migrated_database: str, redis_conn: redis.Redis) -> Iterator[Callable[..., Flask]]:
    """Build apps with settings overrides (Settings field names); tables start empty."""
    truncate_all()
    apps: list[Flask] = []

    def build(**overrides) -> Flask:
        settings = dataclasses.replace(Settings.from_env(service_env()), **overrides)
        app = create_app(settings)
        apps.append(app)
        return app

    yield build
    for app in apps:
        services_of(app).admission.close()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def redis_url() -> str:
    return TEST_REDIS_URL


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    """A real Redis connection on the test database, emptied before each test."""
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.close()


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    """The fake HubSpot on a loopback port, with the test app's client credentials."""
    with FakeHubSpot(client_id="test-client-id", client_secret=TEST_CLIENT_SECRET) as server:
        yield server


@pytest.fixture
def build(make_app: Callable[..., Flask], fake: FakeHubSpot) -> Callable[..., Flask]:
    """Build apps (settings overrides as keywords) that talk to the fake HubSpot."""

    def build_app(**overrides) -> Flask:
        pointed = {"hubspot_api_base": fake.base_url, "hubspot_app_base": fake.base_url}
        return make_app(**(pointed | overrides))

    return build_app


@pytest.fixture
def installed(build: Callable[..., Flask], fake: FakeHubSpot) -> Flask:
    """Empty tables and Redis db, an app pointed at the fake, and the portal installed."""
    from tests.support.release_helpers import install_portal

    app = build()
    install_portal(app, fake)
    return app
