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
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import quote

__all__ = [
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

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6

_KEY_NAMES = r"\w*(?:token|secret|password|passwd)|code|api_?key|hapikey"
_KEY = rf"(?:{_KEY_NAMES}|authorization)"
_VALUE_KEY = rf"(?:{_KEY_NAMES})"  # a value follows the key (not an auth scheme)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # "Bearer xxx" anywhere (Authorization headers, repr of header dicts, error texts).
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1" + REDACTED),
    # "Authorization: Basic xxx" and other non-bearer schemes.
    (
        re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?(?:basic|token)\s+)[^\s\"',;]+"),
        r"\1" + REDACTED,
    ),
    # JSON or Python-repr values: "access_token": "...", 'password': '...'.
    (
        re.compile(rf"(?i)(\"{_KEY}\"\s*:\s*\")(?:[^\"\\]|\\.)*(\")"),
        r"\1" + REDACTED + r"\2",
    ),
    (re.compile(rf"(?i)('{_KEY}'\s*:\s*')(?:[^'\\]|\\.)*(')"), r"\1" + REDACTED + r"\2"),
    # Form bodies and query strings: refresh_token=...&, code=...
    (re.compile(rf"(?i)(?<![\w.-])({_KEY}=)[^&\s\"'#;,]+"), r"\1" + REDACTED),
    # Keyword-argument reprs: access_token='...', refresh_token="..."
    (
        re.compile(rf"(?i)(?<![\w.-])({_KEY}=)(['\"])(?:(?!\2)[^\\]|\\.)*\2"),
        r"\1\2" + REDACTED + r"\2",
    ),
    # Unquoted "key: value" (YAML, header-like and message text): refresh_token: na1-...
    (
        re.compile(rf"(?i)(?<![\w.\"'-])({_VALUE_KEY}:[ \t]*)(?![\"'\s])[^\s\"',;}}]+"),
        r"\1" + REDACTED,
    ),
    # Passwords in URLs: scheme://user:PASS@host -> scheme://user:***@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/?#@\"']*:)[^\s@\"'<>]+(@)"), r"\1***\2"),
)

# Every pattern above needs one of these words: a line without any (most access log lines)
# skips the patterns after one cheap search.
_TRIGGER = re.compile(r"(?i)bearer|authorization|token|secret|passw|code|api_?key|hapikey|://")

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
    """Redacts literal secrets and secret-looking patterns from a record. Never raises."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._literal: re.Pattern[str] | None = None
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Replace the literal secrets (values shorter than 6 characters are ignored)."""
        variants: set[str] = set()
        for secret in secrets or ():
            if isinstance(secret, bytes):
                secret = secret.decode("utf-8", "replace")
            if not isinstance(secret, str) or len(secret.strip()) < MIN_SECRET_LENGTH:
                continue
            variants.update({secret, secret.strip(), quote(secret, safe="")})
        ordered = sorted(variants, key=len, reverse=True)
        # One attribute assignment: threads logging meanwhile see the old or the new pattern.
        self._literal = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        """Return ``text`` with known secrets and secret-looking values replaced."""
        literal = self._literal
        if literal is not None:
            text = literal.sub(REDACTED, text)
        if _TRIGGER.search(text) is None:
            return text
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, context/extras, exc_info."""

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
        return json.dumps(payload, default=str, ensure_ascii=False)


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
