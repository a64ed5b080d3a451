"""Every setting of the service, read from the environment in this one place.

The README's settings table lists the same names. Required secrets that are missing, and values that
do not parse, stop start-up with one line naming the setting (``ConfigError`` is a ``SystemExit``,
so gunicorn, ``flask`` and the RQ entry points print that line and exit without a traceback).
Settings that only make sense together (a claim's lease must outlast one HubSpot call) are checked
together after parsing, with the same one-line error naming all of them.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import unquote

from throttle_app.durations import parse_iso_duration
from throttle_app.encryption_keys import InvalidKeyError, parse_keys

REQUIRED = (
    "DATABASE_URL",
    "REDIS_URL",
    "HUBSPOT_CLIENT_ID",
    "HUBSPOT_CLIENT_SECRET",
    "SECRET_KEY",
    "TOKEN_ENCRYPTION_KEY",
)

# Time around one HubSpot call that is not the call itself (database round trips, the claim's
# own commit, clock differences between this process and PostgreSQL).
CALL_MARGIN_SECONDS = 1.0
# oauth_api's pause between two token-call attempts: at most the backoff cap plus its jitter.
TOKEN_BACKOFF_MAX_SECONDS = 2.0
TOKEN_BACKOFF_JITTER_SECONDS = 0.1
TOKEN_RETRY_PAUSE_SECONDS = TOKEN_BACKOFF_MAX_SECONDS + TOKEN_BACKOFF_JITTER_SECONDS
# A STARTED release job whose heartbeat is older than this (or the longest step, if longer)
# belonged to a killed worker (release_schedule.py).
STALE_JOB_MIN_SECONDS = 30.0
STALE_JOB_MARGIN_SECONDS = 5.0


class ConfigError(SystemExit):
    """A setting is missing or malformed. Exits with the message, never with a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(f"throttle: configuration error: {message}")
        self.message = message


def sqlalchemy_url(url: str) -> str:
    """Map the URL operators write (postgres://, postgresql://) to the psycopg2 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    if url.startswith("postgresql+psycopg2://"):
        return url
    raise ConfigError("DATABASE_URL must be a postgresql:// URL")


@dataclass(frozen=True)
class Settings:
    database_url: str = field(repr=False)  # both may carry a password
    redis_url: str = field(repr=False)
    hubspot_client_id: str
    hubspot_client_secret: str = field(repr=False)
    secret_key: str = field(repr=False)
    token_keys: tuple[bytes, ...] = field(repr=False)
    hubspot_api_base: str = "https://api.hubapi.com"
    hubspot_app_base: str = "https://app.hubspot.com"
    public_base_url: str | None = None
    config_api_token: str | None = field(default=None, repr=False)
    metrics_token: str | None = field(default=None, repr=False)
    dashboard_username: str = "admin"
    dashboard_password: str | None = field(default=None, repr=False)
    port: int = 8000
    # Web server (gunicorn.conf.py)
    web_workers: int = 2
    web_connections: int = 500
    web_timeout_seconds: int = 30
    web_graceful_timeout_seconds: int = 20
    bench_endpoints: bool = False
    # Intake
    hold_duration: timedelta = timedelta(weeks=4)
    max_body_bytes: int = 64 * 1024
    admission_deadline_seconds: float = 5.0
    admission_batch_max: int = 500
    admission_writers: int = 1
    retry_after_seconds: int = 10
    # PostgreSQL
    db_pool_size: int = 10
    db_max_overflow: int = 5
    db_pool_timeout_seconds: float = 5.0
    db_statement_timeout_ms: int = 10_000
    db_connect_timeout_seconds: int = 5
    # HubSpot HTTP and OAuth
    http_connect_timeout_seconds: float = 3.0
    http_read_timeout_seconds: float = 10.0
    token_refresh_margin_seconds: int = 300
    token_lock_timeout_ms: int = 5000
    token_call_retries: int = 2
    oauth_state_ttl_seconds: int = 600
    # Release engine
    bucket_capacity: int = 10
    bucket_refill_per_second: float = 9.5
    max_inline_wait_seconds: float = 2.0
    lease_seconds: int = 120
    release_lead_ms: int = 150
    release_batch_size: int = 100
    release_job_seconds: float = 20.0
    max_attempts: int = 20
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 300.0
    retry_after_default_seconds: float = 10.0
    retry_after_max_seconds: float = 300.0
    refused_backoff_seconds: float = 600.0
    cleaner_interval_seconds: int = 60
    retention_days: int = 35
    purge_batch_size: int = 5000
    job_timeout_seconds: int = 600
    # Redis, health, logs
    redis_timeout_seconds: float = 2.0
    health_timeout_seconds: float = 2.0
    log_level: str = "INFO"
    log_json: bool = True
    proxy_fix_hops: int = 0

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line."""
        from sqlalchemy.engine import make_url

        found = [self.hubspot_client_secret, self.secret_key]
        found += [v for v in (self.config_api_token, self.metrics_token) if v]
        found += [v for v in (self.dashboard_password,) if v]
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
        its timeouts and the pauses between attempts (oauth_tokens, oauth_api)."""
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
        """Read every setting; raise ConfigError naming the first one that is missing or bad."""
        env = os.environ if env is None else env
        reader = _Reader(env)
        for name in REQUIRED:
            reader.required(name)
        try:
            token_keys = parse_keys(env["TOKEN_ENCRYPTION_KEY"])
        except InvalidKeyError as exc:
            raise ConfigError(str(exc)) from None
        values = dict(
            database_url=sqlalchemy_url(env["DATABASE_URL"]),
            redis_url=env["REDIS_URL"],
            hubspot_client_id=env["HUBSPOT_CLIENT_ID"],
            # A secret mounted from a file often ends in a newline; HubSpot would refuse it.
            hubspot_client_secret=env["HUBSPOT_CLIENT_SECRET"].strip(),
            secret_key=env["SECRET_KEY"],
            token_keys=token_keys,
            hubspot_api_base=reader.url("HUBSPOT_API_BASE", cls.hubspot_api_base),
            hubspot_app_base=reader.url("HUBSPOT_APP_BASE", cls.hubspot_app_base),
            public_base_url=reader.optional_url("PUBLIC_BASE_URL"),
            config_api_token=env.get("CONFIG_API_TOKEN") or None,
            metrics_token=env.get("THROTTLE_METRICS_TOKEN") or None,
            dashboard_username=env.get("THROTTLE_DASHBOARD_USERNAME") or cls.dashboard_username,
            dashboard_password=env.get("THROTTLE_DASHBOARD_PASSWORD") or None,
            port=reader.integer("PORT", cls.port, low=1, high=65535),
            web_workers=reader.integer("THROTTLE_WEB_WORKERS", cls.web_workers, low=1, high=64),
            web_connections=reader.integer(
                "THROTTLE_WEB_CONNECTIONS", cls.web_connections, low=1, high=10_000
            ),
            web_timeout_seconds=reader.integer(
                "THROTTLE_WEB_TIMEOUT_SECONDS", cls.web_timeout_seconds, low=1
            ),
            web_graceful_timeout_seconds=reader.integer(
                "THROTTLE_WEB_GRACEFUL_TIMEOUT_SECONDS", cls.web_graceful_timeout_seconds, low=1
            ),
            bench_endpoints=reader.boolean("THROTTLE_BENCH_ENDPOINTS", cls.bench_endpoints),
            hold_duration=reader.duration("THROTTLE_HOLD_DURATION", "P4W"),
            max_body_bytes=reader.integer("THROTTLE_MAX_BODY_BYTES", cls.max_body_bytes, low=1024),
            admission_deadline_seconds=reader.number(
                "THROTTLE_ADMISSION_DEADLINE_SECONDS", cls.admission_deadline_seconds
            ),
            admission_batch_max=reader.integer(
                "THROTTLE_ADMISSION_BATCH_MAX", cls.admission_batch_max, low=1, high=5000
            ),
            admission_writers=reader.integer(
                "THROTTLE_ADMISSION_WRITERS", cls.admission_writers, low=1, high=16
            ),
            retry_after_seconds=reader.integer(
                "THROTTLE_RETRY_AFTER_SECONDS", cls.retry_after_seconds, low=1
            ),
            db_pool_size=reader.integer("THROTTLE_DB_POOL_SIZE", cls.db_pool_size, low=1),
            db_max_overflow=reader.integer("THROTTLE_DB_MAX_OVERFLOW", cls.db_max_overflow, low=0),
            db_pool_timeout_seconds=reader.number(
                "THROTTLE_DB_POOL_TIMEOUT_SECONDS", cls.db_pool_timeout_seconds
            ),
            db_statement_timeout_ms=reader.integer(
                "THROTTLE_DB_STATEMENT_TIMEOUT_MS", cls.db_statement_timeout_ms, low=100
            ),
            db_connect_timeout_seconds=reader.integer(
                "THROTTLE_DB_CONNECT_TIMEOUT_SECONDS", cls.db_connect_timeout_seconds, low=1
            ),
            http_connect_timeout_seconds=reader.number(
                "THROTTLE_HTTP_CONNECT_TIMEOUT_SECONDS", cls.http_connect_timeout_seconds
            ),
            http_read_timeout_seconds=reader.number(
                "THROTTLE_HTTP_READ_TIMEOUT_SECONDS", cls.http_read_timeout_seconds
            ),
            token_refresh_margin_seconds=reader.integer(
                "THROTTLE_TOKEN_REFRESH_MARGIN_SECONDS", cls.token_refresh_margin_seconds, low=0
            ),
            token_lock_timeout_ms=reader.integer(
                "THROTTLE_TOKEN_LOCK_TIMEOUT_MS", cls.token_lock_timeout_ms, low=100
            ),
            token_call_retries=reader.integer(
                "THROTTLE_TOKEN_CALL_RETRIES", cls.token_call_retries, low=0, high=10
            ),
            oauth_state_ttl_seconds=reader.integer(
                "THROTTLE_OAUTH_STATE_TTL_SECONDS", cls.oauth_state_ttl_seconds, low=30
            ),
            bucket_capacity=reader.integer("THROTTLE_BUCKET_CAPACITY", cls.bucket_capacity, low=1),
            bucket_refill_per_second=reader.number(
                "THROTTLE_BUCKET_REFILL_PER_SECOND", cls.bucket_refill_per_second
            ),
            max_inline_wait_seconds=reader.number(
                "THROTTLE_MAX_INLINE_WAIT_SECONDS", cls.max_inline_wait_seconds
            ),
            lease_seconds=reader.integer("THROTTLE_LEASE_SECONDS", cls.lease_seconds, low=5),
            release_lead_ms=reader.integer(
                "THROTTLE_RELEASE_LEAD_MS", cls.release_lead_ms, low=0, high=5000
            ),
            release_batch_size=reader.integer(
                "THROTTLE_RELEASE_BATCH_SIZE", cls.release_batch_size, low=1, high=100
            ),
            release_job_seconds=reader.number(
                "THROTTLE_RELEASE_JOB_SECONDS", cls.release_job_seconds
            ),
            max_attempts=reader.integer("THROTTLE_MAX_ATTEMPTS", cls.max_attempts, low=1),
            retry_base_seconds=reader.number("THROTTLE_RETRY_BASE_SECONDS", cls.retry_base_seconds),
            retry_max_seconds=reader.number("THROTTLE_RETRY_MAX_SECONDS", cls.retry_max_seconds),
            retry_after_default_seconds=reader.number(
                "THROTTLE_RETRY_AFTER_DEFAULT_SECONDS", cls.retry_after_default_seconds
            ),
            retry_after_max_seconds=reader.number(
                "THROTTLE_RETRY_AFTER_MAX_SECONDS", cls.retry_after_max_seconds
            ),
            refused_backoff_seconds=reader.number(
                "THROTTLE_REFUSED_BACKOFF_SECONDS", cls.refused_backoff_seconds
            ),
            cleaner_interval_seconds=reader.integer(
                "THROTTLE_CLEANER_INTERVAL_SECONDS", cls.cleaner_interval_seconds, low=1
            ),
            retention_days=reader.integer("THROTTLE_RETENTION_DAYS", cls.retention_days, low=1),
            purge_batch_size=reader.integer(
                "THROTTLE_PURGE_BATCH_SIZE", cls.purge_batch_size, low=1
            ),
            job_timeout_seconds=reader.integer(
                "THROTTLE_JOB_TIMEOUT_SECONDS", cls.job_timeout_seconds, low=10
            ),
            redis_timeout_seconds=reader.number(
                "THROTTLE_REDIS_TIMEOUT_SECONDS", cls.redis_timeout_seconds
            ),
            health_timeout_seconds=reader.number(
                "THROTTLE_HEALTH_TIMEOUT_SECONDS", cls.health_timeout_seconds
            ),
            log_level=reader.choice(
                "THROTTLE_LOG_LEVEL", cls.log_level, ("DEBUG", "INFO", "WARNING", "ERROR")
            ),
            log_json=reader.boolean("THROTTLE_LOG_JSON", cls.log_json),
            proxy_fix_hops=reader.integer("THROTTLE_PROXY_FIX_HOPS", 0, low=0, high=5),
        )
        settings = cls(**values)
        _check_lease(settings)
        return settings


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
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password
    except ValueError:
        return None


class _Reader:
    """Parses one environment variable at a time and names it in every error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        return value.strip() if value is not None and value.strip() else None

    def required(self, name: str) -> str:
        value = self._raw(name)
        if value is None:
            raise ConfigError(f"{name} is required but not set")
        return value

    def integer(
        self, name: str, default: int, low: int | None = None, high: int | None = None
    ) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{name} must be positive, got {raw!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.upper() not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}, got {raw!r}")
        return raw.upper()

    def duration(self, name: str, default: str) -> timedelta:
        raw = self._raw(name) or default
        try:
            value = parse_iso_duration(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        if value <= timedelta(0):
            raise ConfigError(f"{name} must be a positive duration, got {raw!r}")
        return value

    def url(self, name: str, default: str) -> str:
        return self.optional_url(name) or default

    def optional_url(self, name: str) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return None
        if not raw.startswith(("http://", "https://")):
            raise ConfigError(f"{name} must start with http:// or https://, got {raw!r}")
        return raw.rstrip("/")
