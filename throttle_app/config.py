"""Every setting of the service, read from the environment in this one place.

``Settings`` is the settings table: each field is one row naming its environment variable, kind,
default, bounds and meaning (config_rows.py), and ``Settings.from_env`` reads every row the same
way. ``SETTINGS`` lists the rows; the README's settings table lists the same names and defaults
(tests/test_config.py holds the two together).

Required settings that are missing, and values that do not parse, stop start-up with one line
naming the setting (``ConfigError`` is a ``SystemExit``, so gunicorn, ``flask`` and the RQ entry
points print that line and exit without a traceback). Settings that only make sense together (a
claim's lease must outlast one HubSpot call) are checked after the table pass, with the same
one-line error naming all of them; so is what only development mode may run with (a missing
PUBLIC_BASE_URL, short secrets, ...: config_refusals.py).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import unquote, urlsplit

from throttle_app.config_refusals import check_closed_by_default
from throttle_app.config_rows import (
    REQUIRED,
    ConfigError,
    Setting,
    boolean,
    choice,
    duration,
    integer,
    number,
    read_rows,
    row,
    rows_of,
    text,
    url,
)
from throttle_app.encryption_keys import InvalidKeyError, parse_keys

# Time around one HubSpot call that is not the call itself (database round trips, the claim's
# own commit, clock differences between this process and PostgreSQL).
CALL_MARGIN_SECONDS = 1.0
# oauth_api's pause between two token-call attempts: at most the backoff cap plus its jitter.
TOKEN_BACKOFF_MAX_SECONDS = 2.0
TOKEN_BACKOFF_JITTER_SECONDS = 0.1
TOKEN_RETRY_PAUSE_SECONDS = TOKEN_BACKOFF_MAX_SECONDS + TOKEN_BACKOFF_JITTER_SECONDS
# A STARTED release job whose heartbeat is older than this (or the longest step, if longer)
# belonged to a killed worker (release/schedule.py).
STALE_JOB_MIN_SECONDS = 30.0
STALE_JOB_MARGIN_SECONDS = 5.0


def sqlalchemy_url(url: str) -> str:
    """Map the URL operators write (postgres://, postgresql://) to the psycopg2 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    if url.startswith("postgresql+psycopg2://"):
        return url
    raise ConfigError("DATABASE_URL must be a postgresql:// URL")


def _database_url(setting: Setting, value: str) -> str:
    return sqlalchemy_url(value)


def _token_keys(setting: Setting, value: str) -> tuple[bytes, ...]:
    try:
        return parse_keys(value, setting.env)
    except InvalidKeyError as exc:  # names the entry, never the key
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class Settings:
    """The service's settings, one row per environment variable (see the module docstring)."""

    database_url: str = row(
        _database_url, "DATABASE_URL", REQUIRED, "PostgreSQL URL", secret=True, verbatim=True
    )
    redis_url: str = text("REDIS_URL", REQUIRED, "Redis URL", secret=True)  # may hold a password
    hubspot_client_id: str = text("HUBSPOT_CLIENT_ID", REQUIRED, "the HubSpot app's client id")
    # Not verbatim: a secret mounted from a file often ends in a newline HubSpot would refuse.
    hubspot_client_secret: str = text(
        "HUBSPOT_CLIENT_SECRET", REQUIRED, "signs webhooks", secret=True, verbatim=False
    )
    secret_key: str = text("SECRET_KEY", REQUIRED, "signs the OAuth state cookie", secret=True)
    token_keys: tuple[bytes, ...] = row(
        _token_keys, "TOKEN_ENCRYPTION_KEY", REQUIRED, "base64 keys, newest first", secret=True
    )
    hubspot_api_base: str = url("HUBSPOT_API_BASE", "https://api.hubapi.com", "HubSpot API")
    hubspot_app_base: str = url("HUBSPOT_APP_BASE", "https://app.hubspot.com", "consent page")
    public_base_url: str | None = url("PUBLIC_BASE_URL", None, "how HubSpot reaches us")
    # `flask hubspot publish-action` only (the v4 definitions API of apps on the older platform)
    hubspot_app_id: int | None = integer("HUBSPOT_APP_ID", None, "the HubSpot app's id", low=1)
    hubspot_developer_api_key: str | None = text(
        "HUBSPOT_DEVELOPER_API_KEY", None, "developer account API key", secret=True
    )
    config_api_token: str | None = text("CONFIG_API_TOKEN", None, "config API token", secret=True)
    metrics_token: str | None = text("THROTTLE_METRICS_TOKEN", None, "/metrics token", secret=True)
    dashboard_username: str = text("THROTTLE_DASHBOARD_USERNAME", "admin", "rq-dashboard user")
    dashboard_password: str | None = text(
        "THROTTLE_DASHBOARD_PASSWORD", None, "rq-dashboard password", secret=True
    )
    port: int = integer("PORT", 8000, "web listen port", low=1, high=65535)
    # Web server (gunicorn.conf.py)
    web_workers: int = integer("THROTTLE_WEB_WORKERS", 2, "gunicorn workers", low=1, high=64)
    web_connections: int = integer(
        "THROTTLE_WEB_CONNECTIONS", 2000, "gevent connections per worker", low=1, high=10_000
    )
    web_timeout_seconds: int = integer("THROTTLE_WEB_TIMEOUT_SECONDS", 30, "timeout", low=1)
    web_graceful_timeout_seconds: int = integer(
        "THROTTLE_WEB_GRACEFUL_TIMEOUT_SECONDS", 20, "graceful timeout", low=1
    )
    bench_endpoints: bool = boolean("THROTTLE_BENCH_ENDPOINTS", False, "/api/bench/ceiling")
    # Hostile clients: request size limits and slow bodies (gunicorn.conf.py, ops/web_worker.py),
    # health checks reused for a moment (ops/health.py)
    limit_request_line: int = integer(
        "THROTTLE_LIMIT_REQUEST_LINE", 4094, "longest request line (414 above)", low=256, high=8190
    )
    limit_request_fields: int = integer(
        "THROTTLE_LIMIT_REQUEST_FIELDS", 50, "most headers per request", low=10, high=32768
    )
    limit_request_field_size: int = integer(
        "THROTTLE_LIMIT_REQUEST_FIELD_SIZE", 8190, "longest header line", low=1024, high=65536
    )
    body_read_timeout_seconds: float = number(
        "THROTTLE_BODY_READ_TIMEOUT_SECONDS", 5.0, "a body must arrive within this (408)"
    )
    health_cache_ms: int = integer(
        "THROTTLE_HEALTH_CACHE_MS", 1000, "health checks reused this long", low=0, high=60_000
    )
    # Intake
    hold_duration: timedelta = duration(  # noqa: RUF009 (a row is a dataclasses.field)
        "THROTTLE_HOLD_DURATION", timedelta(weeks=4), "hold answered to HubSpot"
    )
    max_body_bytes: int = integer("THROTTLE_MAX_BODY_BYTES", 64 * 1024, "body cap", low=1024)
    admission_deadline_seconds: float = number(
        "THROTTLE_ADMISSION_DEADLINE_SECONDS", 5.0, "longer than this to commit: 503"
    )
    admission_batch_max: int = integer(
        "THROTTLE_ADMISSION_BATCH_MAX", 500, "executions per group commit", low=1, high=5000
    )
    admission_writers: int = integer(
        "THROTTLE_ADMISSION_WRITERS", 1, "group-commit writers per process", low=1, high=16
    )
    retry_after_seconds: int = integer(
        "THROTTLE_RETRY_AFTER_SECONDS", 10, "Retry-After of our 503s", low=1
    )
    # PostgreSQL
    db_pool_size: int = integer("THROTTLE_DB_POOL_SIZE", 10, "pool per process", low=1)
    db_max_overflow: int = integer("THROTTLE_DB_MAX_OVERFLOW", 5, "pool overflow", low=0)
    db_pool_timeout_seconds: float = number("THROTTLE_DB_POOL_TIMEOUT_SECONDS", 5.0, "pool wait")
    db_statement_timeout_ms: int = integer(
        "THROTTLE_DB_STATEMENT_TIMEOUT_MS", 10_000, "statement timeout", low=100
    )
    db_connect_timeout_seconds: int = integer(
        "THROTTLE_DB_CONNECT_TIMEOUT_SECONDS", 5, "connect timeout", low=1
    )
    # HubSpot HTTP and OAuth
    http_connect_timeout_seconds: float = number(
        "THROTTLE_HTTP_CONNECT_TIMEOUT_SECONDS", 3.0, "connect timeout of every HubSpot call"
    )
    http_read_timeout_seconds: float = number(
        "THROTTLE_HTTP_READ_TIMEOUT_SECONDS", 10.0, "read timeout of every HubSpot call"
    )
    token_refresh_margin_seconds: int = integer(
        "THROTTLE_TOKEN_REFRESH_MARGIN_SECONDS", 300, "refresh this long before expiry", low=0
    )
    token_lock_timeout_ms: int = integer(
        "THROTTLE_TOKEN_LOCK_TIMEOUT_MS", 5000, "wait for another process's refresh", low=100
    )
    token_call_retries: int = integer(
        "THROTTLE_TOKEN_CALL_RETRIES", 2, "token call retries", low=0, high=10
    )
    oauth_state_ttl_seconds: int = integer(
        "THROTTLE_OAUTH_STATE_TTL_SECONDS", 600, "OAuth state lifetime", low=30
    )
    # Release engine
    bucket_capacity: int = integer("THROTTLE_BUCKET_CAPACITY", 10, "portal bucket size", low=1)
    bucket_refill_per_second: float = number(
        "THROTTLE_BUCKET_REFILL_PER_SECOND", 9.5, "portal bucket refill"
    )
    max_inline_wait_seconds: float = number(
        "THROTTLE_MAX_INLINE_WAIT_SECONDS", 2.0, "longer bucket waits give the claim back"
    )
    lease_seconds: int = integer("THROTTLE_LEASE_SECONDS", 17, "claim lease, renewed", low=5)
    release_lead_ms: int = integer(
        "THROTTLE_RELEASE_LEAD_MS", 150, "a release job starts this early", low=0, high=5000
    )
    release_batch_size: int = integer(
        "THROTTLE_RELEASE_BATCH_SIZE", 100, "callbacks per HubSpot call", low=1, high=100
    )
    release_job_seconds: float = number(
        "THROTTLE_RELEASE_JOB_SECONDS", 20.0, "one job's longest run"
    )
    max_attempts: int = integer("THROTTLE_MAX_ATTEMPTS", 20, "sends before failing", low=1)
    transient_retries: int = integer(
        "THROTTLE_TRANSIENT_RETRIES", 2, "prompt retries of a failed call", low=0, high=10
    )
    transient_retry_delay_ms: int = integer(
        "THROTTLE_TRANSIENT_RETRY_DELAY_MS", 100, "first prompt retry's pause", low=1, high=10_000
    )
    retry_base_seconds: float = number("THROTTLE_RETRY_BASE_SECONDS", 2.0, "first backoff")
    retry_max_seconds: float = number("THROTTLE_RETRY_MAX_SECONDS", 300.0, "longest backoff")
    retry_after_default_seconds: float = number(
        "THROTTLE_RETRY_AFTER_DEFAULT_SECONDS", 10.0, "a 429 without Retry-After"
    )
    retry_after_max_seconds: float = number(
        "THROTTLE_RETRY_AFTER_MAX_SECONDS", 300.0, "clamp of Retry-After"
    )
    refused_backoff_seconds: float = number(
        "THROTTLE_REFUSED_BACKOFF_SECONDS", 600.0, "pause after HubSpot refuses a request"
    )
    cleaner_interval_seconds: int = integer(
        "THROTTLE_CLEANER_INTERVAL_SECONDS", 60, "cleaner period", low=1
    )
    time_zone_refresh_batch: int = integer(
        "THROTTLE_TIME_ZONE_REFRESH_BATCH", 1, "portal time zones asked per cleaner pass", low=0
    )
    retention_days: int = integer("THROTTLE_RETENTION_DAYS", 35, "keep finished rows", low=1)
    purge_batch_size: int = integer("THROTTLE_PURGE_BATCH_SIZE", 5000, "rows per purge", low=1)
    job_timeout_seconds: int = integer(
        "THROTTLE_JOB_TIMEOUT_SECONDS", 600, "RQ job timeout", low=10
    )
    # Redis, health, logs
    redis_timeout_seconds: float = number("THROTTLE_REDIS_TIMEOUT_SECONDS", 2.0, "socket timeout")
    health_timeout_seconds: float = number("THROTTLE_HEALTH_TIMEOUT_SECONDS", 2.0, "each check")
    log_level: str = choice(
        "THROTTLE_LOG_LEVEL", "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    log_json: bool = boolean("THROTTLE_LOG_JSON", True, "JSON log lines")
    proxy_fix_hops: int = integer("THROTTLE_PROXY_FIX_HOPS", 0, "trusted proxies", low=0, high=5)
    # Closed by default: what a deployment must ask for (see `production_refusals`)
    dev_mode: bool = boolean("THROTTLE_DEV_MODE", False, "development mode: lifts the refusals")
    web_dashboard: bool = boolean("THROTTLE_WEB_DASHBOARD", False, "rq-dashboard at /rq in web")
    require_signature_v3: bool = boolean(
        "THROTTLE_REQUIRE_SIGNATURE_V3", False, "refuse v2-signed webhooks"
    )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line."""
        from sqlalchemy.engine import make_url

        found = [self.hubspot_client_secret, self.secret_key]
        found += [v for v in (self.config_api_token, self.metrics_token) if v]
        found += [v for v in (self.dashboard_password, self.hubspot_developer_api_key) if v]
        try:
            password = make_url(self.database_url).password
        except Exception:
            password = None
        if password:
            found.append(str(password))
        password = _redis_password(self.redis_url)
        if password:
            found += [password, unquote(password)]  # as written in the URL, and as sent
        for key in self.token_keys:  # as TOKEN_ENCRYPTION_KEY may spell them (padding or not)
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                found.append(encode(key).decode().rstrip("="))
        return tuple(dict.fromkeys(found))

    @property
    def call_budget_seconds(self) -> float:
        """The longest one HubSpot call can take: the bucket's inline wait, then the connect and
        read timeouts, plus a margin. A call starts only when this much of its lease is left."""
        return (
            self.max_inline_wait_seconds
            + self.http_connect_timeout_seconds
            + self.http_read_timeout_seconds
            + CALL_MARGIN_SECONDS
        )

    @property
    def token_refresh_budget_seconds(self) -> float:
        """The longest one token refresh can take: the row-lock wait, then every attempt with
        its timeouts and the pauses between attempts (oauth/tokens.py, hubspot/oauth_api.py)."""
        attempts = self.token_call_retries + 1
        return (
            self.token_lock_timeout_ms / 1000
            + attempts * (self.http_connect_timeout_seconds + self.http_read_timeout_seconds)
            + self.token_call_retries * TOKEN_RETRY_PAUSE_SECONDS
            + CALL_MARGIN_SECONDS
        )

    @property
    def stale_job_seconds(self) -> float:
        """A release job heartbeats before every HubSpot call and token refresh, so a heartbeat
        older than the longest such step (plus a margin) means its worker is gone."""
        longest = max(self.call_budget_seconds, self.token_refresh_budget_seconds)
        return max(STALE_JOB_MIN_SECONDS, longest + STALE_JOB_MARGIN_SECONDS)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every row, then the checks across rows; raise ConfigError naming the first
        setting that is missing or bad (every missing required one before any malformed one)."""
        settings = cls(**read_rows(SETTINGS, os.environ if env is None else env))
        _check_lease(settings)
        check_closed_by_default(vars(settings))
        return settings


SETTINGS: tuple[Setting, ...] = rows_of(Settings)


def _check_lease(settings: Settings) -> None:
    """A claim's lease must outlast the release lead plus one HubSpot call; a shorter one makes
    every claim give its rows back before sending, and the queue loops without releasing."""
    needed = settings.release_lead_ms / 1000 + settings.call_budget_seconds
    if settings.lease_seconds <= needed:
        raise ConfigError(
            f"THROTTLE_LEASE_SECONDS ({settings.lease_seconds}) must be longer than"
            " THROTTLE_RELEASE_LEAD_MS + THROTTLE_MAX_INLINE_WAIT_SECONDS"
            " + THROTTLE_HTTP_CONNECT_TIMEOUT_SECONDS + THROTTLE_HTTP_READ_TIMEOUT_SECONDS"
            f" + {CALL_MARGIN_SECONDS:g} s margin ({needed:g} s)"
        )


def _redis_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None
