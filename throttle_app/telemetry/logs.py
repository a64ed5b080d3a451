"""Structured JSON logs with secret redaction, shared by the web, worker and scheduler processes.

The root handler carries a ContextFilter (fields from ``bind``/``log_context``) then the
RedactingFilter; handler filters, unlike logger filters, also see records from child loggers. The
redacting filter stores the redacted formatted message in ``record.msg`` (args cleared), renders and
redacts the traceback into ``record.exc_text`` and clears ``record.exc_info``, so no later formatter
can render the raw traceback again.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

from throttle_app.telemetry.redaction import MAX_REDACTED_CHARS, REDACTED, Redactor

__all__ = [
    "REDACTED",
    "ContextFilter",
    "JsonFormatter",
    "RedactingFilter",
    "bind",
    "clear_context",
    "configure_logging",
    "current_context",
    "log_context",
    "redacting_filter",
    "unbind",
]

# Attributes every LogRecord has; anything else on a record came from `extra` or the context.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, __file__, 0, "", None, None))
) | {"message", "asctime", "taskName"}
_SAFE_TYPES = (int, float, bool, type(None))

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "throttle_log_context", default=None
)


def current_context() -> dict[str, Any]:
    """A copy of the fields bound in the current thread, greenlet or task."""
    return dict(_context.get() or {})


def bind(**fields: Any) -> contextvars.Token[dict[str, Any] | None]:
    """Add fields to every later log record of this context (returns a token for ``reset``)."""
    return _context.set({**(_context.get() or {}), **fields})


def unbind(*names: str) -> None:
    """Remove the named fields from the current context."""
    fields = current_context()
    for name in names:
        fields.pop(name, None)
    _context.set(fields)


def clear_context() -> None:
    """Drop every bound field (e.g. at the start of a request or job)."""
    _context.set(None)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Bind fields for the duration of the block, then restore the previous context."""
    token = bind(**fields)
    try:
        yield current_context()
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies bound context fields onto the record; explicit ``extra`` fields win."""

    def filter(self, record: logging.LogRecord) -> bool:
        with contextlib.suppress(Exception):
            for key, value in (_context.get() or {}).items():
                if key not in _STANDARD_ATTRS and not hasattr(record, key):
                    setattr(record, key, value)
        return True


class RedactingFilter(logging.Filter):
    """Redacts literal secrets and secret-looking patterns from a record (telemetry/redaction.py:
    linear in the text's length, every text cut at ``max_chars``). Never raises."""

    def __init__(self, secrets: Iterable[str] = (), max_chars: int = MAX_REDACTED_CHARS) -> None:
        super().__init__()
        self._redactor = Redactor(secrets, max_chars)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Replace the literal secrets (values shorter than 6 characters are ignored)."""
        self._redactor.set_secrets(secrets)

    def redact(self, text: str, max_chars: int | None = None) -> str:
        """Return ``text`` with known secrets and secret-looking values replaced, cut at
        ``max_chars`` when given (and at the filter's own limit in any case)."""
        return self._redactor.redact(text, max_chars)

    def _redact_value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, _SAFE_TYPES):
            return value
        if depth < 4 and isinstance(value, dict):
            return {str(k): self._redact_value(v, depth + 1) for k, v in value.items()}
        if depth < 4 and isinstance(value, list | tuple | set | frozenset):
            return [self._redact_value(v, depth + 1) for v in value]
        return self.redact(str(value))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._redact_record(record)
        except Exception:  # never let redaction break logging, and never leak on failure
            record.msg, record.args = "[log record could not be redacted]", None
            record.exc_info = record.exc_text = record.stack_info = None
            for key in [k for k in vars(record) if k not in _STANDARD_ATTRS]:
                setattr(record, key, REDACTED)
        return True

    def _redact_record(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = f"[unformattable log message] msg={record.msg!r} args={record.args!r}"
        record.msg, record.args = self.redact(str(message)), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _plain_formatter.formatException(record.exc_info)
        record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, self._redact_value(value))


_plain_formatter = logging.Formatter()


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


# json.dumps escapes every control character below U+0020; these three break a line for readers
# that split on Unicode line boundaries (Python's str.splitlines), so they are escaped as well.
_LINE_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class JsonFormatter(logging.Formatter):
    """One JSON object per line, whatever the values hold: timestamp, level, logger, message,
    context/extras, exc_info. No character of a value can end the line early."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:
            message = "[unformattable log message]"
        payload: dict[str, Any] = _extras(record)
        payload.update(
            timestamp=_timestamp(record),
            level=record.levelname,
            logger=record.name,
            message=message,
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = _plain_formatter.formatException(record.exc_info)
        if record.exc_text:
            payload["exc_info"] = record.exc_text
        if record.stack_info:
            payload["stack_info"] = record.stack_info
        line = json.dumps(payload, default=str, ensure_ascii=False)
        return line.translate(_LINE_BREAKS)


class TextFormatter(logging.Formatter):
    """Human-readable lines for local development, context/extras appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        if not fields:
            return line
        head, sep, tail = line.partition("\n")
        return f"{head} [{fields}]{sep}{tail}"


_redacting_filter = RedactingFilter()
_HANDLER_MARK = "_throttle_handler"


def redacting_filter() -> RedactingFilter:
    """The process-wide filter (secrets from the last ``configure_logging``), e.g. for gunicorn."""
    return _redacting_filter


def configure_logging(
    level: str | int = "INFO",
    secrets: Iterable[str] = (),
    json_lines: bool = True,
    stream: IO[str] | None = None,
) -> None:
    """Install one redacting stderr (or ``stream``) handler on the root logger. Idempotent."""
    resolved = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(resolved, int):
        raise ValueError(f"unknown log level {level!r}")
    _redacting_filter.set_secrets(secrets)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(_redacting_filter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(resolved)
