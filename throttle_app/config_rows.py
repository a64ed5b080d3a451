"""The rows of the settings table (config.py): one environment variable each, and its kinds.

A row is declared as a dataclass field (``port: int = integer("PORT", 8000, "...", low=1)``), so
the field's default, its ``repr`` and its environment variable come from one line. Every row is
read the same way: a missing or empty variable means the default (``REQUIRED`` stops start-up
instead), anything else goes through the row's kind, and every error names the variable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import timedelta
from functools import partial
from typing import Any

from throttle_app.durations import parse_iso_duration

REQUIRED: Any = MISSING  # the default of a row that start-up cannot do without
_METADATA_KEY = "setting"


class ConfigError(SystemExit):
    """A setting is missing or malformed. Exits with the message, never with a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(f"throttle: configuration error: {message}")
        self.message = message


Parse = Callable[["Setting", str], Any]


@dataclass(frozen=True)
class Setting:
    """One row: an environment variable, how it becomes a value, and what it means.

    ``parse`` never sees an empty value. It sees the value without surrounding whitespace, or as
    written when ``verbatim``. ``low``/``high`` bound an integer, ``choices`` a choice; a
    ``secret`` value is kept out of ``repr``.
    """

    env: str
    parse: Parse
    default: Any
    doc: str
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    verbatim: bool = False
    attr: str = ""  # the field it fills

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def require(self, env: Mapping[str, str]) -> None:
        """Stop start-up unless ``env`` gives this row a value that is not just whitespace."""
        if not env.get(self.env, "").strip():
            raise ConfigError(f"{self.env} is required but not set")

    def read(self, env: Mapping[str, str]) -> Any:
        """This row's value in ``env``: its default when missing or empty, else parsed."""
        if self.required:
            self.require(env)
        written = env.get(self.env, "")
        value = written if self.verbatim else written.strip()
        return self.parse(self, value) if value else self.default


def row(parse: Parse, env: str, default: Any, doc: str, **options: Any) -> Any:
    """A dataclass field that carries its row: the row's default, and no repr if secret."""
    setting = Setting(env, parse, default, doc, **options)
    return field(default=default, repr=not setting.secret, metadata={_METADATA_KEY: setting})


def rows_of(cls: type) -> tuple[Setting, ...]:
    """The rows of a dataclass declared with ``row`` fields, in field order, named by field."""
    return tuple(replace(f.metadata[_METADATA_KEY], attr=f.name) for f in fields(cls))


def read_rows(rows: tuple[Setting, ...], env: Mapping[str, str]) -> dict[str, Any]:
    """Every row's value by field name. A missing required value is reported before any
    malformed one, so a half-configured deployment learns first what it lacks."""
    for setting in rows:
        if setting.required:
            setting.require(env)
    return {setting.attr: setting.read(env) for setting in rows}


def _as_written(setting: Setting, value: str) -> str:
    return value


def _integer(setting: Setting, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{setting.env} must be an integer, got {value!r}") from None
    low, high = setting.low, setting.high
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{setting.env} must be {bounds}, got {number}")
    return number


def _number(setting: Setting, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{setting.env} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{setting.env} must be positive, got {value!r}")
    return number


def _boolean(setting: Setting, value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{setting.env} must be true or false, got {value!r}")


def _choice(setting: Setting, value: str) -> str:
    if value.upper() not in setting.choices:
        options = ", ".join(setting.choices)
        raise ConfigError(f"{setting.env} must be one of {options}, got {value!r}")
    return value.upper()


def _duration(setting: Setting, value: str) -> timedelta:
    try:
        duration = parse_iso_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{setting.env}: {exc}") from None
    if duration <= timedelta(0):
        raise ConfigError(f"{setting.env} must be a positive duration, got {value!r}")
    return duration


def _url(setting: Setting, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{setting.env} must start with http:// or https://, got {value!r}")
    return value.rstrip("/")


# The kinds of row. Text is used exactly as written unless the row says otherwise.
text = partial(row, _as_written, verbatim=True)
url = partial(row, _url)  # http(s)://, without a trailing slash
integer = partial(row, _integer)  # within low and high
number = partial(row, _number)  # positive and finite
boolean = partial(row, _boolean)  # 1/true/yes/on or 0/false/no/off
choice = partial(row, _choice)  # one of choices, upper-cased
duration = partial(row, _duration)  # positive ISO 8601 (P4W, PT12H)
