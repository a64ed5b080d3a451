"""What both benchmarks need: the service's environment and a fresh, migrated database."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import redis

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-client-secret"


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
        **extra,
    }


def fresh_database(env: dict[str, str]) -> None:
    """Drop and recreate the benchmark database, empty its Redis database, migrate."""
    url = env["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    admin = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "throttle_app", "db", "upgrade"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
