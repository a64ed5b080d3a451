"""Operator rate overrides per (portal, action): validation and upsert.

An override replaces the rate executions arrive with, from the queue's next window on. A named
queue (queueName) is overridden through its action id `queue:<name>`: no single action owns it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from throttle_app.input_fields import FieldError, positive_int, storable_text
from throttle_app.models import ThrottleConfig
from throttle_app.release.rates import MAX_PER_WINDOW, MAX_WINDOW_SECONDS, period_seconds

MAX_ACTION_ID = 72  # "queue:" and a 64-character queue name


def validate_config(payload: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Return (clean values, per-field errors); errors is empty when the payload is valid."""
    if not isinstance(payload, dict):
        return {}, {"body": "must be a JSON object"}
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def check(name: str, parse) -> None:
        if payload.get(name) is None:
            errors[name] = "is required"
            return
        try:
            clean[name] = parse(name, payload[name])
        except FieldError as exc:
            errors[name] = exc.message

    check("portal_id", positive_int)
    check("action_id", _action_id)
    check("max_throughput", positive_int)
    check("time_period", positive_int)
    check("time_unit", _time_unit)
    if clean.get("max_throughput", 0) > MAX_PER_WINDOW:
        errors["max_throughput"] = f"must be at most {MAX_PER_WINDOW}"
    if "time_period" in clean and "time_unit" in clean:
        window = clean["time_period"] * period_seconds("time_unit", clean["time_unit"])
        if window > MAX_WINDOW_SECONDS:
            errors["time_period"] = "window must be at most 28 days"
    return clean, errors


def _action_id(field: str, value: object) -> str:
    text = (
        str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    )
    if not text or len(text) > MAX_ACTION_ID:
        raise FieldError(field, f"must be a non-empty string of at most {MAX_ACTION_ID} characters")
    if not storable_text(text):
        raise FieldError(field, "must be valid UTF-8 text without NUL characters")
    return text


def _time_unit(field: str, value: object) -> str:
    period_seconds(field, value)
    unit = str(value).strip().lower()
    return unit if unit.endswith("s") else unit + "s"


def upsert_config(session: Session, values: dict[str, Any]) -> ThrottleConfig:
    """Insert or update the override for (portal_id, action_id); the caller commits."""
    statement = insert(ThrottleConfig.__table__).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["portal_id", "action_id"],
        set_={
            "max_throughput": statement.excluded.max_throughput,
            "time_period": statement.excluded.time_period,
            "time_unit": statement.excluded.time_unit,
            "updated_at": func.now(),
        },
    )
    session.execute(statement)
    config = find_config(session, values["portal_id"], values["action_id"])
    if config is None:  # the row the statement above wrote, in this transaction
        raise LookupError(f"override {values['portal_id']}/{values['action_id']} vanished")
    return config


def find_config(session: Session, portal_id: int, action_id: str) -> ThrottleConfig | None:
    query = select(ThrottleConfig).where(
        ThrottleConfig.portal_id == portal_id, ThrottleConfig.action_id == action_id
    )
    return session.scalars(query.execution_options(populate_existing=True)).one_or_none()


def config_as_json(config: ThrottleConfig) -> dict[str, Any]:
    return {
        "portal_id": config.portal_id,
        "action_id": config.action_id,
        "max_throughput": config.max_throughput,
        "time_period": config.time_period,
        "time_unit": config.time_unit,
        "updated_at": config.updated_at.isoformat() if config.updated_at else None,
    }
