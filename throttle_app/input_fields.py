"""One input field at a time: the error that names it, and the checks every edge shares.

Values end up in PostgreSQL columns, so an accepted value must be storable: integers fit a
bigint, text is valid UTF-8 without NUL. A value that is not would fail its statement, and under
group commit every request of the batch with it.
"""

from __future__ import annotations

import re

MAX_BIGINT = 2**63 - 1
# An integer as HubSpot sends it in a string: ASCII digits, at most 18 (below 2**63). Not
# str.isdigit(): it accepts "²", which int() refuses, and int() refuses over 4300 digits.
ASCII_INTEGER = re.compile(r"[0-9]{1,18}")


class FieldError(ValueError):
    """One input field is invalid; `field` names it as the client sent it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def bigint(value: object) -> int | None:
    """A non-negative integer that fits a bigint, as a JSON number or ASCII digits; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and ASCII_INTEGER.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_BIGINT:
        return value
    return None


def positive_int(field: str, value: object) -> int:
    """A positive integer given as a JSON number or a numeric string ("50", 50, 50.0)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    number = bigint(value)
    if number is None or number < 1:
        raise FieldError(field, "must be a positive integer")
    return number


def storable_text(value: str) -> bool:
    """PostgreSQL text takes it: valid UTF-8 (no lone surrogate such as "\\ud800"), no NUL."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in value
