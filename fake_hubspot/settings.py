"""Tunable behaviour of the fake: token lifetimes, rate limits and injected faults.

Every field can be set from Python (``FakeHubSpot(**settings)``, ``set_faults(**changes)``) or over
HTTP (``POST /_fake/faults`` with a JSON object). Values are validated the same way on both paths.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Settings:
    """Everything about the fake that a test or the sandbox may change."""

    # OAuth
    default_portal_id: int = 50467010
    app_id: int = 4242424
    expires_in: int = 1800  # access-token lifetime, seconds
    code_ttl: float = 600.0  # authorization-code lifetime, seconds
    rotate_refresh_tokens: bool = False  # a refresh answers a new refresh token, killing the old
    token_latency: float = 0.0  # seconds added to /oauth/2026-03/token and .../introspect answers
    # Rate limit (per portal, rolling window; every authenticated API call counts)
    rate_limit: int = 110
    rate_window: float = 10.0
    retry_after: int | None = None  # fixed Retry-After seconds; None: until the window admits
    retry_after_header: bool = True  # False: 429s carry no Retry-After
    force_429: dict[int, int] = field(default_factory=dict)  # portal -> next N calls answer 429
    # Callbacks
    batch_limit: int = 100
    callback_latency: float = 0.0  # seconds added to every callback answer (after processing)
    error_rate: float = 0.0  # probability that a callback call answers a 5xx (completes nothing)
    error_statuses: list[int] = field(default_factory=lambda: [502, 503, 500])
    fail_next: int = 0  # the next N callback calls answer fail_next_status
    fail_next_status: int = 503
    # Every Nth callback call answers fail_every_status (0: off): "one call in ten fails", exact.
    fail_every: int = 0
    fail_every_status: int = 502
    bad_callback_ids: set[str] = field(default_factory=set)
    # In a batch: answered 200 {"status": "PARTIAL", "errors": [...]}; the others complete.
    partial_callback_ids: set[str] = field(default_factory=set)
    seed: int | None = None  # seeds the error_rate dice
    # Action definitions (v4 API): the developer account's key, and the largest page listed
    developer_api_key: str = "test-developer-api-key"
    definitions_page_size: int = 100
    # Account details (GET /account-info/v3/details)
    default_time_zone: str = "America/New_York"  # every portal's zone unless time_zones says
    time_zones: dict[int, str] = field(default_factory=dict)  # portal -> its zone (any text)
    account_info_status: int | None = None  # every account-info call answers this 4xx/5xx
    account_info_latency: float = 0.0  # seconds added to every account-info answer

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy (sets become sorted lists, portal keys become strings)."""
        data = dataclasses.asdict(self)
        data["bad_callback_ids"] = sorted(self.bad_callback_ids)
        data["partial_callback_ids"] = sorted(self.partial_callback_ids)
        data["force_429"] = {str(k): v for k, v in sorted(self.force_429.items())}
        data["time_zones"] = {str(k): v for k, v in sorted(self.time_zones.items())}
        return data


def _int(minimum: int) -> Callable[[str, Any], int]:
    def coerce(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}")
        return value

    return coerce


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return float(value)


def _positive_number(name: str, value: Any) -> float:
    number = _number(name, value)
    if number <= 0:
        raise ValueError(f"{name} must be > 0")
    return number


def _probability(name: str, value: Any) -> float:
    number = _number(name, value)
    if number > 1:
        raise ValueError(f"{name} must be between 0 and 1")
    return number


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _optional_int(name: str, value: Any) -> int | None:
    return None if value is None else _int(0)(name, value)


def _status(name: str, value: Any) -> int:
    status = _int(100)(name, value)
    if not 500 <= status <= 599:
        raise ValueError(f"{name} must be a 5xx status")
    return status


def _statuses(name: str, value: Any) -> list[int]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{name} must be a non-empty list of 5xx statuses")
    return [_status(name, item) for item in value]


def _callback_ids(name: str, value: Any) -> set[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise ValueError(f"{name} must be a list of callbackIds")
    if not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name} must hold strings")
    return set(value)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _per_portal(name: str, value: Any, what: str, coerce: Callable[[str, Any], Any]) -> dict:
    """A mapping of portal ids (ints or digit strings, as JSON keys) to coerced values."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must map portal ids to {what}")
    result: dict[int, Any] = {}
    for key, item in value.items():
        try:
            portal_id = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"{name} keys must be portal ids") from None
        result[portal_id] = coerce(name, item)
    return result


def _force_429(name: str, value: Any) -> dict[int, int]:
    counts = _per_portal(name, value, "call counts", _int(0))
    return {k: v for k, v in counts.items() if v > 0}


def _zone(name: str, value: Any) -> str:
    # Any text: tests make HubSpot report zones the service does not know.
    if not isinstance(value, str) or not 1 <= len(value) <= 200:
        raise ValueError(f"{name} must be a string of 1 to 200 characters")
    return value


def _time_zones(name: str, value: Any) -> dict[int, str]:
    return _per_portal(name, value, "time zones", _zone)


def _error_status(name: str, value: Any) -> int | None:
    if value is None:
        return None
    status = _int(100)(name, value)
    if not 400 <= status <= 599:
        raise ValueError(f"{name} must be a 4xx or 5xx status, or null")
    return status


_COERCERS: dict[str, Callable[[str, Any], Any]] = {
    "default_portal_id": _int(1),
    "app_id": _int(1),
    "expires_in": _int(1),
    "code_ttl": _positive_number,
    "rotate_refresh_tokens": _bool,
    "token_latency": _number,
    "rate_limit": _int(1),
    "rate_window": _positive_number,
    "retry_after": _optional_int,
    "retry_after_header": _bool,
    "force_429": _force_429,
    "batch_limit": _int(1),
    "callback_latency": _number,
    "error_rate": _probability,
    "error_statuses": _statuses,
    "fail_next": _int(0),
    "fail_next_status": _status,
    "fail_every": _int(0),
    "fail_every_status": _status,
    "bad_callback_ids": _callback_ids,
    "partial_callback_ids": _callback_ids,
    "seed": _optional_int,
    "developer_api_key": _text,
    "definitions_page_size": _int(1),
    "default_time_zone": _zone,
    "time_zones": _time_zones,
    "account_info_status": _error_status,
    "account_info_latency": _number,
}


def updated(settings: Settings, changes: Mapping[str, Any]) -> Settings:
    """A validated copy of ``settings`` with ``changes`` applied; ValueError names a bad key."""
    unknown = sorted(set(changes) - set(_COERCERS))
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    values = {name: _COERCERS[name](name, value) for name, value in changes.items()}
    return dataclasses.replace(copy.deepcopy(settings), **values)
