"""The Throttle action's fields as HubSpot shows them: inputs, outputs, labels, descriptions.

One table, read by app_definition.py for both forms of the definition (the developer-platform
project and the v4 API). Names and values are the intake's (release/rates.py, issue 11's policy
fields) and stay stable once released: existing workflows store them. HubSpot has no default
value for a custom action's input, so an optional field's description says what leaving it
empty means (the intake's default).
"""

from __future__ import annotations

from dataclasses import dataclass

STATIC = ("STATIC_VALUE",)
STATIC_OR_PROPERTY = ("STATIC_VALUE", "OBJECT_PROPERTY")
PERIODS = ("seconds", "minutes", "hours", "days")  # release/rates.py also takes the singulars
DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# throttle_outcome's values (release/completion_fields.py sends the first and the last).
RELEASED, EXPIRED, FAILED = "released", "expired", "failed"
OUTCOME_FIELD = "throttle_outcome"
WAITED_FIELD = "throttle_waited_seconds"


@dataclass(frozen=True)
class Field:
    """One field: HubSpot's typeDefinition (`name`, `type`, `field_type`, `options` as
    (value, label) pairs), whether it is required, its value sources, label and description."""

    name: str
    type: str
    field_type: str
    label: str
    description: str
    required: bool = False
    options: tuple[tuple[str, str], ...] = ()
    value_types: tuple[str, ...] = STATIC


INPUT_FIELDS: tuple[Field, ...] = (
    Field(
        "maxThroughPut",
        "number",
        "number",
        "Records per interval",
        "How many records continue per interval (1 to 10,000), e.g. 50.",
        required=True,
    ),
    Field(
        "time",
        "number",
        "number",
        "Interval length",
        "How many periods one interval lasts, e.g. 1 (with Period: hours = one hour). An"
        " interval is at most 28 days.",
        required=True,
    ),
    Field(
        "period",
        "enumeration",
        "select",
        "Period",
        "The unit of the interval.",
        required=True,
        options=tuple((unit, unit.capitalize()) for unit in PERIODS),
    ),
    Field(
        "mode",
        "enumeration",
        "select",
        "Release mode",
        "Burst (default when empty): up to N records at the start of each interval. Spread:"
        " one at a time, evenly spaced over the interval.",
        options=(("burst", "Burst"), ("spread", "Spread evenly")),
    ),
    Field(
        "releaseDays",
        "enumeration",
        "checkbox",
        "Release days",
        "Release only on these days (in the time zone below). Empty: every day.",
        options=tuple(zip(DAYS, DAY_NAMES, strict=True)),
    ),
    Field(
        "windowStart",
        "string",
        "text",
        "Window start (HH:MM)",
        "Release only from this local time, 24-hour HH:MM, e.g. 09:00. Empty: all day.",
    ),
    Field(
        "windowEnd",
        "string",
        "text",
        "Window end (HH:MM)",
        "Release only until this local time, e.g. 17:00. An end at or before the start runs"
        " past midnight.",
    ),
    Field(
        "timeZone",
        "string",
        "text",
        "Time zone",
        "IANA time zone of the days and the window, e.g. America/New_York. Empty: the"
        " portal's own time zone.",
    ),
    Field(
        "startAt",
        "datetime",
        "date",
        "Start at",
        "Release nothing before this date and time. Empty: release at once.",
        value_types=STATIC_OR_PROPERTY,
    ),
    Field(
        "priority",
        "number",
        "number",
        "Priority (0-9)",
        "Within the queue, higher priorities continue first; first in, first out within a"
        " priority. Empty: 0.",
        value_types=STATIC_OR_PROPERTY,
    ),
    Field(
        "queueName",
        "string",
        "text",
        "Shared queue name",
        "Workflows naming the same queue share one queue and one rate across the portal"
        " (1-64 letters, digits, spaces, _ . -). Empty: this action has its own queue.",
    ),
)

OUTPUT_FIELDS: tuple[Field, ...] = (
    Field(
        OUTCOME_FIELD,
        "enumeration",
        "select",
        "Throttle outcome",
        "released: continued at the configured rate. failed: continued after HubSpot refused"
        " the release or the attempt limit was reached.",
        options=((RELEASED, "Released"), (EXPIRED, "Expired"), (FAILED, "Failed")),
    ),
    Field(
        WAITED_FIELD,
        "number",
        "number",
        "Seconds waited",
        "Whole seconds between the record reaching the action and its release.",
    ),
)

ACTION_NAME = "Throttle"
ACTION_DESCRIPTION = (
    "Hold enrolled records and let them continue at a set rate (N per interval), optionally"
    " spread evenly, on chosen days, inside a daily window, from a start time, by priority,"
    " or in a queue shared by several workflows."
)
ACTION_CARD = "Release {{maxThroughPut}} per {{time}} {{period}}"
OBJECT_TYPES = ("CONTACT", "COMPANY", "DEAL", "TICKET")
