"""What the benchmarks share: the service's environment, a fresh migrated database, and (for
the release and cleaner benchmarks) an app with one portal installed at the fake HubSpot."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import redis
from flask import Flask

from devtools import ROOT
from devtools.database import reset_database
from fake_hubspot import FakeHubSpot
from throttle_app import create_app
from throttle_app.config import Settings
from throttle_app.hubspot.oauth_api import TokenGrant, TokenInfo
from throttle_app.release.schedule import ReleaseSchedule
from throttle_app.services import services_of

SECRET = "bench-client-secret"
DB = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/throttle_bench")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PORTAL = 50467010


def service_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a benchmarked process (this interpreter's venv, bench secrets)."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HUBSPOT_CLIENT_ID": "bench",
        "HUBSPOT_CLIENT_SECRET": SECRET,
        "SECRET_KEY": "bench-secret-key",
        "TOKEN_ENCRYPTION_KEY": base64.b64encode(b"b" * 32).decode(),
        "THROTTLE_LOG_LEVEL": "WARNING",
        "THROTTLE_DEV_MODE": "true",  # bench secrets, an http:// fake HubSpot, bench endpoints
        **extra,
    }


def fresh_database(env: dict[str, str]) -> None:
    """Drop and recreate the benchmark database, empty its Redis database, migrate."""
    reset_database(env["DATABASE_URL"])
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "throttle_app", "db", "upgrade"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def installed_app(fake: FakeHubSpot, **extra: str) -> tuple[dict[str, str], Flask]:
    """A fresh benchmark database and an app whose portal PORTAL is installed at `fake`; the
    environment the service's processes get (plus `extra` variables)."""
    env = service_env(
        DB, REDIS, HUBSPOT_API_BASE=fake.base_url, HUBSPOT_APP_BASE=fake.base_url, **extra
    )
    fresh_database(env)
    app = create_app(Settings.from_env(env))
    issued = fake.issue_tokens(PORTAL)
    grant = TokenGrant(
        issued["access_token"],
        issued["refresh_token"],
        int(issued["expires_in"]),
        datetime.now(UTC),
        PORTAL,
    )
    info = TokenInfo(PORTAL, "bench.example.com", "bench@example.com", ("automation",), 1, "bench")
    with app.app_context():
        services_of(app).tokens.store_install(grant, info)
    return env, app


def release_schedule(app: Flask) -> ReleaseSchedule:
    """`app`'s release schedule."""
    return services_of(app).schedule
