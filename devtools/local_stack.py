"""The whole service locally against the fake HubSpot: `bash scripts/run.sh`; Ctrl-C stops it.

Prepares what the Procfile's processes need, then becomes honcho running the Procfile:
  1. the settings below, checked, and both ports free;
  2. the dev-only secrets (devtools.env_file: .cache/dev.env, written once, then completed);
  3. the database created when missing (devtools.database) and migrated (`entrypoint.sh migrate`);
  4. the URLs printed; then `honcho start` replaces this process (the same PID as run.sh), so
     Ctrl-C or SIGTERM reach honcho, which stops every process (SIGKILL after 5 s). When one
     process exits on its own, honcho stops the others and exits with that process's status.
The Procfile runs the fake HubSpot (OAuth consent that approves at once, callbacks, /_fake/ read
outs), the web role on PORT, one worker on every queue (with its release clock), the scheduler.

Environment overrides [defaults], so that several stacks can run side by side:
  PORT [8000]                   the API       FAKE_PORT [8099]   the fake HubSpot
  DEV_DATABASE [throttle_dev]   DEV_PG_URL [postgresql://postgres@127.0.0.1:5432]
  DEV_REDIS_DB [0]              DEV_REDIS_SERVER [redis://127.0.0.1:6379]
  DEV_ENV_FILE [.cache/dev.env] and any THROTTLE_* knob, e.g. THROTTLE_LOG_LEVEL=DEBUG
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from devtools import ROOT
from devtools.database import ensure_database
from devtools.env_file import complete_env_file, env_file_path, read_env_file
from devtools.ports import port_answers

PROCFILE = ROOT / "Procfile"


class StackError(Exception):
    """The stack cannot start; the message says why and what to do (one line)."""


@dataclass(frozen=True)
class StackSettings:
    """Where the local stack runs, from the environment (module docstring: the overrides)."""

    port: int
    fake_port: int
    database: str
    pg_url: str
    redis_server: str
    redis_db: int
    env_file: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StackSettings:
        """The settings, or StackError naming the first bad value."""
        settings = cls(
            port=_whole_number(env, "PORT", "8000"),
            fake_port=_whole_number(env, "FAKE_PORT", "8099"),
            database=env.get("DEV_DATABASE", "throttle_dev"),
            pg_url=env.get("DEV_PG_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/"),
            redis_server=env.get("DEV_REDIS_SERVER", "redis://127.0.0.1:6379").rstrip("/"),
            redis_db=_whole_number(env, "DEV_REDIS_DB", "0"),
            env_file=env_file_path(env),
        )
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", settings.database):
            raise StackError(
                "DEV_DATABASE must be a plain lower-case name (letters, digits, _), "
                f"got '{settings.database}'"
            )
        if settings.port == settings.fake_port:
            raise StackError(f"PORT and FAKE_PORT must differ (both {settings.port})")
        return settings

    @property
    def database_url(self) -> str:
        return f"{self.pg_url}/{self.database}"

    @property
    def redis_url(self) -> str:
        return f"{self.redis_server}/{self.redis_db}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fake(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"


def _whole_number(env: Mapping[str, str], name: str, default: str) -> int:
    value = env.get(name, default)
    if not value.isdigit():
        raise StackError(f"{name} must be a whole number, got '{value}'")
    return int(value)


def stack_env(settings: StackSettings, secrets: Mapping[str, str]) -> dict[str, str]:
    """The environment every Procfile process gets: this one, the dev secrets, the settings,
    and this interpreter's venv first on PATH."""
    env = {**os.environ, **secrets}
    env.setdefault("THROTTLE_LOG_JSON", "false")
    env.setdefault("THROTTLE_WEB_DASHBOARD", "true")  # /rq on the local API
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        PORT=str(settings.port),
        WEB_PORT=str(settings.port),  # the Procfile's web line: honcho overwrites PORT
        FAKE_PORT=str(settings.fake_port),
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        HUBSPOT_API_BASE=settings.fake,
        HUBSPOT_APP_BASE=settings.fake,
        PUBLIC_BASE_URL=settings.api,
        THROTTLE_DEV_MODE="true",  # dev secrets and an http:// fake HubSpot: development only
    )
    return env


def prepare_database(settings: StackSettings, env: Mapping[str, str]) -> None:
    """The database created when missing and migrated to head; StackError when it cannot be."""
    try:
        if ensure_database(settings.database_url):
            say(f"created database {settings.database}")
    except psycopg2.OperationalError as exc:
        raise StackError(f"cannot reach PostgreSQL at {settings.pg_url}: {exc}".strip()) from None
    say(f"applying migrations to {settings.database}")
    migrate = subprocess.run(
        ["bash", "scripts/entrypoint.sh", "migrate"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if migrate.returncode != 0:
        sys.stderr.write("\n".join((migrate.stdout + migrate.stderr).splitlines()[-20:]) + "\n")
        raise StackError("migrations failed (their output is above)")


def banner(settings: StackSettings, env: Mapping[str, str]) -> str:
    """What a developer needs to use the stack: URLs, logins, where the data and secrets are."""
    api, fake = settings.api, settings.fake
    dashboard_login = (
        f"user {env['THROTTLE_DASHBOARD_USERNAME']}, password {env['THROTTLE_DASHBOARD_PASSWORD']}"
    )
    return f"""
Throttle is starting locally (honcho runs the Procfile; Ctrl-C stops everything):
  API              {api}   (HubSpot action URL: {api}/api/hubspot/action)
  Health           {api}/api/health   (200 once the web role is up)
  RQ dashboard     {api}/rq/  {dashboard_login}
  Fake HubSpot     {fake}   (read-outs: {fake}/_fake/completions, {fake}/_fake/stats)
  Install (OAuth)  {api}/api/oauth/authorize   (open it in a browser: the fake approves)
  Config API       Authorization: Bearer {env["CONFIG_API_TOKEN"]}
  Demo             .venv/bin/python scripts/demo.py --api {api} --fake {fake}
  Data             {settings.database_url}   {settings.redis_url}
  Secrets          {settings.env_file} (dev only)
"""


def say(message: str) -> None:
    print(f"run: {message}", file=sys.stderr, flush=True)


def prepare() -> tuple[StackSettings, dict[str, str]]:
    """Steps 1 to 3 of the module docstring: the settings and the processes' environment."""
    settings = StackSettings.from_env(os.environ)
    for port in (settings.port, settings.fake_port):
        if port_answers(port):
            raise StackError(
                f"port {port} is already in use (another stack?); choose others, e.g. "
                "PORT=8001 FAKE_PORT=8098 bash scripts/run.sh"
            )
    if complete_env_file(settings.env_file):
        say(f"wrote dev-only secrets to {settings.env_file}")
    env = stack_env(settings, read_env_file(settings.env_file))
    prepare_database(settings, env)
    return settings, env


def main() -> None:
    """Prepare, then exec honcho; exits 1 with one line on stderr when the stack cannot start."""
    os.chdir(ROOT)
    try:
        settings, env = prepare()
    except StackError as exc:
        say(str(exc))
        sys.exit(1)
    print(banner(settings, env), flush=True)
    # --env: honcho reads no stray .env file (the environment above is complete).
    honcho = [sys.executable, "-m", "honcho", "start", "--procfile", str(PROCFILE)]
    honcho += ["--app-root", str(ROOT), "--env", os.devnull, "--port", str(settings.port)]
    os.execve(sys.executable, honcho, env)  # noqa: S606 - a fixed argv, no shell


if __name__ == "__main__":
    main()
