"""Settings: required secrets stop start-up with one line naming them; values are checked."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest

from tests.conftest import service_env
from throttle_app.config import ConfigError, Settings, sqlalchemy_url


@pytest.mark.parametrize(
    "name",
    [
        "DATABASE_URL",
        "REDIS_URL",
        "HUBSPOT_CLIENT_ID",
        "HUBSPOT_CLIENT_SECRET",
        "SECRET_KEY",
        "TOKEN_ENCRYPTION_KEY",
    ],
)
def test_missing_required_setting_names_it(name):
    env = service_env()
    del env[name]
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert name in str(caught.value)


def test_empty_client_secret_is_a_startup_error_not_a_bypass():
    with pytest.raises(ConfigError, match="HUBSPOT_CLIENT_SECRET"):
        Settings.from_env(service_env(HUBSPOT_CLIENT_SECRET="  "))


@pytest.mark.parametrize("key", ["not-base64!!", "c2hvcnQ=", ""])
def test_malformed_encryption_key_stops_startup(key):
    with pytest.raises(ConfigError, match="TOKEN_ENCRYPTION_KEY") as caught:
        Settings.from_env(service_env(TOKEN_ENCRYPTION_KEY=key))
    assert key not in str(caught.value) or not key


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("THROTTLE_HOLD_DURATION", "4 weeks"),
        ("THROTTLE_LOG_JSON", "maybe"),
        ("HUBSPOT_API_BASE", "ftp://x"),
        ("THROTTLE_DB_POOL_SIZE", "0"),
    ],
)
def test_malformed_values_name_the_setting(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(service_env(**{name: value}))


def test_database_urls_map_to_psycopg2():
    assert sqlalchemy_url("postgres://u@h/d") == "postgresql+psycopg2://u@h/d"
    assert sqlalchemy_url("postgresql://u@h/d") == "postgresql+psycopg2://u@h/d"
    with pytest.raises(ConfigError):
        sqlalchemy_url("mysql://u@h/d")


def test_secrets_are_not_in_the_repr_and_are_listed_for_redaction():
    settings = Settings.from_env(
        service_env(DATABASE_URL="postgresql://app:db-pass-123@127.0.0.1/x")
    )
    assert "yyyyyyyy" not in repr(settings)
    assert "db-pass-123" not in repr(settings)
    assert "db-pass-123" in settings.secrets
    assert settings.hubspot_client_secret in settings.secrets


def test_redis_password_and_token_keys_are_listed_for_redaction():
    key = base64.b64encode(b"k" * 32).decode()
    settings = Settings.from_env(
        service_env(REDIS_URL="redis://:r%40pass99@127.0.0.1:6379/0", TOKEN_ENCRYPTION_KEY=key)
    )
    assert "r%40pass99" not in repr(settings)
    assert {"r%40pass99", "r@pass99", key.rstrip("=")} <= set(settings.secrets)


def test_client_secret_loses_the_newline_of_a_mounted_file():
    settings = Settings.from_env(service_env(HUBSPOT_CLIENT_SECRET="abc-secret\n"))
    assert settings.hubspot_client_secret == "abc-secret"


def test_startup_error_is_one_line_without_traceback():
    env = {k: v for k, v in service_env().items() if k != "SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "-c", "from throttle_app import create_app; create_app()"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "throttle: configuration error: SECRET_KEY is required but not set"
    ]


def test_importing_the_package_opens_nothing_and_patches_nothing():
    code = (
        "import sys, throttle_app, throttle_app.config;"
        "assert 'gevent' not in sys.modules and 'flask' not in sys.modules, sorted(sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "overrides",
    [
        {"THROTTLE_LEASE_SECONDS": "10"},  # under 3 + 10 + 2 + 1 s with the defaults
        {"THROTTLE_LEASE_SECONDS": "30", "THROTTLE_HTTP_READ_TIMEOUT_SECONDS": "30"},
        {"THROTTLE_LEASE_SECONDS": "20", "THROTTLE_MAX_INLINE_WAIT_SECONDS": "10"},
    ],
)
def test_a_lease_shorter_than_one_call_stops_startup(overrides):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(service_env(**overrides))
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    for name in (
        "THROTTLE_LEASE_SECONDS",
        "THROTTLE_HTTP_CONNECT_TIMEOUT_SECONDS",
        "THROTTLE_HTTP_READ_TIMEOUT_SECONDS",
        "THROTTLE_MAX_INLINE_WAIT_SECONDS",
    ):
        assert name in message


def test_a_lease_longer_than_one_call_is_accepted():
    settings = Settings.from_env(service_env(THROTTLE_LEASE_SECONDS="17"))
    assert settings.lease_seconds > settings.call_budget_seconds


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_numbers_name_the_setting(value):
    with pytest.raises(ConfigError, match="THROTTLE_HTTP_READ_TIMEOUT_SECONDS"):
        Settings.from_env(service_env(THROTTLE_HTTP_READ_TIMEOUT_SECONDS=value))


def test_a_job_is_stale_only_after_its_longest_step():
    from throttle_app.config import TOKEN_BACKOFF_MAX_SECONDS

    settings = Settings.from_env(service_env())
    one_call = 2.0 + 3.0 + 10.0  # bucket inline wait, connect and read timeouts
    refresh = 5.0 + 3 * (3.0 + 10.0) + 2 * TOKEN_BACKOFF_MAX_SECONDS  # lock wait, 3 tries, 2 pauses
    assert settings.stale_job_seconds > max(one_call, refresh)
