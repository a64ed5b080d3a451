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
    assert getattr(Settings.from_env(service_env(**{row.env: ""})), row.attr) == row.default
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
    settings = Settings.from_env(
        service_env(CONFIG_API_TOKEN=" tok\n", PORT=" 8080 ", HUBSPOT_API_BASE=" http://h/ ")
    )
    assert settings.config_api_token == " tok\n"
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
        names = re.findall(r"`([A-Z_]+)`", cells[0])
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
