"""Settings: required secrets stop start-up with one line naming them; values are checked."""

from __future__ import annotations

import base64
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import service_env
from throttle_app.config import SETTINGS, ConfigError, Settings, sqlalchemy_url
from throttle_app.config_refusals import MIN_SECRET_LENGTH

PUBLIC = "https://throttle.example.com"

REQUIRED_NAMES = (
    "DATABASE_URL",
    "REDIS_URL",
    "HUBSPOT_CLIENT_ID",
    "HUBSPOT_CLIENT_SECRET",
    "SECRET_KEY",
    "TOKEN_ENCRYPTION_KEY",
)


@pytest.mark.parametrize("name", REQUIRED_NAMES)
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


def start_up_error(env: dict[str, str]) -> list[str]:
    """The lines `create_app()` prints when start-up stops (it must exit 1)."""
    result = subprocess.run(
        [sys.executable, "-c", "from throttle_app import create_app; create_app()"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    return result.stderr.strip().splitlines()


def test_startup_error_is_one_line_without_traceback():
    env = {k: v for k, v in service_env().items() if k != "SECRET_KEY"}
    assert start_up_error(env) == [
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


# The settings table: every row is read the same way, and the README lists the same rows.

README = Path(__file__).resolve().parents[1] / "README.md"
ROWS = {row.env: row for row in SETTINGS}
# The environment names the design fixes; every other setting is a tuning knob with the prefix.
UNPREFIXED = {
    "DATABASE_URL",
    "REDIS_URL",
    "HUBSPOT_CLIENT_ID",
    "HUBSPOT_CLIENT_SECRET",
    "HUBSPOT_API_BASE",
    "HUBSPOT_APP_BASE",
    "PUBLIC_BASE_URL",
    "SECRET_KEY",
    "TOKEN_ENCRYPTION_KEY",
    "CONFIG_API_TOKEN",
    "PORT",
    # HubSpot's own credentials, named like HUBSPOT_CLIENT_ID (flask hubspot publish-action)
    "HUBSPOT_APP_ID",
    "HUBSPOT_DEVELOPER_API_KEY",
}


def test_every_field_is_one_row_with_its_own_name():
    assert [row.attr for row in SETTINGS] == [f.name for f in dataclasses.fields(Settings)]
    assert len(ROWS) == len(SETTINGS), "two rows share an environment variable"
    assert [n for n in ROWS if n not in UNPREFIXED and not n.startswith("THROTTLE_")] == []
    assert {n for n, row in ROWS.items() if row.required} == set(REQUIRED_NAMES)
    assert all(row.doc for row in SETTINGS)


@pytest.mark.parametrize(
    "row", [row for row in SETTINGS if not row.required], ids=lambda row: row.env
)
def test_an_unset_or_empty_setting_takes_its_default(row):
    env = service_env(**({"PUBLIC_BASE_URL": PUBLIC} | {row.env: ""}))  # valid outside dev mode
    assert getattr(Settings.from_env(env), row.attr) == row.default
    assert getattr(Settings, row.attr) == row.default


@pytest.mark.parametrize(
    "row",
    [row for row in SETTINGS if row.low is not None or row.high is not None],
    ids=lambda row: row.env,
)
def test_integer_bounds_are_inclusive_and_name_the_setting(row):
    for edge in (row.low, row.high):
        if edge is not None:
            assert row.read({row.env: f" {edge} "}) == edge
    outside = [row.low - 1] if row.low is not None else []
    outside += [row.high + 1] if row.high is not None else []
    for value in outside:
        with pytest.raises(ConfigError) as caught:
            row.read({row.env: str(value)})
        assert re.fullmatch(
            rf"{row.env} must be (at least|between) .*, got {value}", caught.value.message
        )


def test_text_is_used_as_written_and_other_kinds_without_surrounding_whitespace():
    token = " tok-0123456789abcdef0123456789abcdef\n"
    settings = Settings.from_env(
        service_env(CONFIG_API_TOKEN=token, PORT=" 8080 ", HUBSPOT_API_BASE=" http://h/ ")
    )
    assert settings.config_api_token == token
    assert (settings.port, settings.hubspot_api_base) == (8080, "http://h")


def test_a_missing_secret_is_reported_before_a_malformed_value():
    env = service_env(DATABASE_URL="mysql://u@h/d", PORT="x")
    del env["SECRET_KEY"]
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert caught.value.message == "SECRET_KEY is required but not set"


def _readme_settings() -> dict[str, str]:
    """README's `## Settings` table as {variable: its default cell}. A cell may list several
    names, `A / _B`, where `_B` replaces the end of `A` (`THROTTLE_DB_POOL_SIZE / _MAX_OVERFLOW`);
    the defaults cell lists their defaults the same way."""
    text = README.read_text()
    assert "\n## Settings\n" in text, "README.md has no ## Settings section"
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]*|_[A-Z0-9_]+)`", cells[0])
        defaults = cells[1].split(" / ")
        if len(defaults) != len(names):
            defaults = [cells[1]] * len(names)
        for name, default in zip(names, defaults, strict=True):
            listed[_expand(name, names[0])] = default
    return listed


def _expand(name: str, first: str) -> str:
    """`_MAX_SECONDS` after `THROTTLE_RETRY_AFTER_DEFAULT_SECONDS`: the longest start of the first
    name that makes a known setting (THROTTLE_RETRY_AFTER_MAX_SECONDS), else the name as written."""
    if not name.startswith("_"):
        return name
    words = first.split("_")
    for end in range(len(words) - 1, 0, -1):
        candidate = "_".join(words[:end]) + name
        if candidate in ROWS:
            return candidate
    return f"{first} / {name}"


def test_every_setting_is_in_the_readme_settings_table():
    missing = [row.env for row in SETTINGS if row.env not in _readme_settings()]
    assert missing == [], f"README.md's ## Settings table does not list: {', '.join(missing)}"


def test_the_readme_settings_table_lists_only_real_settings():
    unknown = [name for name in _readme_settings() if name not in ROWS]
    assert unknown == [], f"README.md's ## Settings table lists unknown: {', '.join(unknown)}"


def test_the_readme_gives_each_setting_its_real_default():
    """A default in backticks must parse to the row's default; `required` marks a required row;
    other words (`unset (no /metrics)`, `the request's URL`) mark a row without a default."""
    wrong = []
    for name, cell in _readme_settings().items():
        row = ROWS.get(name)
        if row is None:
            continue
        quoted = re.fullmatch(r"`([^`]*)`", cell)
        if quoted:
            try:
                ok = not row.required and row.parse(row, quoted.group(1)) == row.default
            except ConfigError:
                ok = False
        else:
            ok = row.required if cell == "required" else row.default is None
        if not ok:
            wrong.append(
                f"{name}: README {cell}, code {'required' if row.required else row.default!r}"
            )
    assert wrong == [], "README.md's ## Settings defaults differ: " + "; ".join(wrong)


# Closed by default: outside development mode, start-up refuses what only development may use.


def production_env(**overrides: str) -> dict[str, str]:
    """The suite's environment with development mode off (its secrets are production-sized)."""
    return service_env(**({"THROTTLE_DEV_MODE": "false", "PUBLIC_BASE_URL": PUBLIC} | overrides))


def test_the_suite_environment_is_valid_outside_development_mode():
    settings = Settings.from_env(production_env())
    assert settings.dev_mode is False
    assert settings.web_dashboard is False and settings.require_signature_v3 is False


SHORT = "x" * (MIN_SECRET_LENGTH - 1)
REFUSED = {
    "no-public-base-url": ({"PUBLIC_BASE_URL": ""}, "PUBLIC_BASE_URL is required"),
    "http-api-base": ({"HUBSPOT_API_BASE": "http://api.hubapi.com"}, "HUBSPOT_API_BASE must be"),
    "http-app-base": ({"HUBSPOT_APP_BASE": "http://app.hubspot.com"}, "HUBSPOT_APP_BASE must be"),
    "bench-endpoints": ({"THROTTLE_BENCH_ENDPOINTS": "true"}, "THROTTLE_BENCH_ENDPOINTS"),
    "short-client-secret": ({"HUBSPOT_CLIENT_SECRET": SHORT}, "HUBSPOT_CLIENT_SECRET must be"),
    "short-secret-key": ({"SECRET_KEY": SHORT}, "SECRET_KEY must be at least 32"),
    "short-config-token": ({"CONFIG_API_TOKEN": SHORT}, "CONFIG_API_TOKEN must be"),
    "short-metrics-token": ({"THROTTLE_METRICS_TOKEN": SHORT}, "THROTTLE_METRICS_TOKEN must"),
    "short-dashboard-password": (
        {"THROTTLE_DASHBOARD_PASSWORD": SHORT},
        "THROTTLE_DASHBOARD_PASSWORD must",
    ),
    "redis-tls-unverified": (
        {"REDIS_URL": "rediss://:pw@redis.internal:6380/0?ssl_cert_reqs=none"},
        "ssl_cert_reqs",
    ),
    "redis-tls-any-host": (
        {"REDIS_URL": "rediss://redis.internal:6380/0?ssl_check_hostname=False"},
        "ssl_check_hostname",
    ),
}


@pytest.mark.parametrize(("overrides", "named"), REFUSED.values(), ids=REFUSED.keys())
def test_outside_development_mode_start_up_refuses(overrides, named):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(production_env(**overrides))
    message = caught.value.message
    assert named in message
    assert len(message.splitlines()) == 1
    assert "THROTTLE_DEV_MODE" in message
    assert SHORT not in message and "pw@" not in message  # names the setting, never the value


@pytest.mark.parametrize(("overrides", "named"), REFUSED.values(), ids=REFUSED.keys())
def test_development_mode_allows_it(overrides, named):
    assert Settings.from_env(production_env(THROTTLE_DEV_MODE="true", **overrides)).dev_mode


def test_a_secret_of_exactly_the_minimum_length_is_accepted():
    exact = "k" * MIN_SECRET_LENGTH
    names = ("SECRET_KEY", "CONFIG_API_TOKEN", "THROTTLE_METRICS_TOKEN")
    settings = Settings.from_env(production_env(**dict.fromkeys(names, exact)))
    assert (settings.secret_key, settings.metrics_token) == (exact, exact)


def test_a_verified_tls_redis_url_is_accepted():
    url = "rediss://:pw@redis.internal:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required"
    assert Settings.from_env(production_env(REDIS_URL=url)).redis_url == url


def test_every_refusal_is_named_in_one_line():
    env = production_env(PUBLIC_BASE_URL="", SECRET_KEY=SHORT, THROTTLE_BENCH_ENDPOINTS="1")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    message = caught.value.message
    assert len(message.splitlines()) == 1
    for name in ("PUBLIC_BASE_URL", "SECRET_KEY", "THROTTLE_BENCH_ENDPOINTS"):
        assert name in message


@pytest.mark.parametrize("mode", ["true", "false"])
def test_a_redis_url_of_another_scheme_is_refused_in_every_mode(mode):
    with pytest.raises(ConfigError, match="REDIS_URL must be a redis://"):
        Settings.from_env(production_env(THROTTLE_DEV_MODE=mode, REDIS_URL="http://redis:6379"))


@pytest.mark.parametrize("mode", ["true", "false"])
def test_the_web_dashboard_needs_a_password_in_every_mode(mode):
    with pytest.raises(ConfigError, match="THROTTLE_WEB_DASHBOARD needs"):
        Settings.from_env(production_env(THROTTLE_DEV_MODE=mode, THROTTLE_WEB_DASHBOARD="true"))


def test_a_production_refusal_stops_start_up_with_one_line():
    env = production_env(HUBSPOT_API_BASE="http://api.hubapi.com")
    assert start_up_error(env) == [
        "throttle: configuration error: HUBSPOT_API_BASE must be https://"
        " (THROTTLE_DEV_MODE=true allows this in development only)"
    ]
