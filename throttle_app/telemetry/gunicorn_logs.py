"""gunicorn's logger for the web process: redacted error lines, and access lines that are JSON.

An access line is a log record whose fields are the request's (remote, method, path, status,
bytes, duration_us, request_id, agent), written by ``JsonFormatter``: ``json.dumps`` escapes
whatever a path or a User-Agent holds (quotes, backslashes, control characters), so every access
line is one valid JSON object. Text that comes from the client is redacted and cut to a few
hundred characters before it is logged, so a hostile header costs as little to log as an
ordinary one. gunicorn's ``access_log_format`` is not used.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, ClassVar

from gunicorn.glogging import Logger

from throttle_app.telemetry.logs import JsonFormatter, RedactingFilter, redacting_filter

__all__ = ["MAX_AGENT_CHARS", "MAX_PATH_CHARS", "ServiceLogger", "access_fields"]

MAX_PATH_CHARS = 1024
MAX_AGENT_CHARS = 512
MAX_HEADER_CHARS = 128  # X-Request-Id (the app echoes only sane ids of at most 128 characters)


def _header(headers: Any, name: str) -> str | None:
    items = headers.items() if hasattr(headers, "items") else headers or ()
    for key, value in items:
        if key.lower() == name:
            return value
    return None


def _status(status: Any) -> int | str | None:
    if isinstance(status, str):
        status = status.split(None, 1)[0] if status else None
    if isinstance(status, str) and status.isdigit():
        return int(status)
    return status


def access_fields(
    resp: Any, environ: Mapping[str, Any], request_time: timedelta, redact: RedactingFilter
) -> dict[str, Any]:
    """The fields of one access line; client-supplied text redacted and cut to a bounded size."""

    def client_text(value: Any, limit: int) -> str | None:
        return None if value is None else redact.redact(str(value), max_chars=limit)

    sent = getattr(resp, "sent", None)
    return {
        "type": "access",
        "remote": client_text(environ.get("REMOTE_ADDR"), MAX_HEADER_CHARS),
        "method": client_text(environ.get("REQUEST_METHOD"), MAX_HEADER_CHARS),
        "path": client_text(environ.get("PATH_INFO"), MAX_PATH_CHARS),
        "status": _status(getattr(resp, "status", None)),
        "bytes": sent if isinstance(sent, int) else None,
        "duration_us": request_time // timedelta(microseconds=1),
        "request_id": client_text(_header(resp.headers, "x-request-id"), MAX_HEADER_CHARS),
        "agent": client_text(environ.get("HTTP_USER_AGENT"), MAX_AGENT_CHARS),
    }


class ServiceLogger(Logger):
    """gunicorn's logger with the service's redaction on every line (re-applied on reload).

    Subclasses set ``secrets`` (literal values never to log) and ``json_errors`` (error lines
    as JSON too); access lines are always JSON.
    """

    secrets: ClassVar[Iterable[str]] = ()
    json_errors: ClassVar[bool] = True

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        redact = redacting_filter()
        redact.set_secrets(self.secrets)
        for handler in self.error_log.handlers + self.access_log.handlers:
            if redact not in handler.filters:
                handler.addFilter(redact)
        for handler in self.access_log.handlers:
            handler.setFormatter(JsonFormatter())
        if self.json_errors:
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())

    def access(
        self, resp: Any, req: Any, environ: Mapping[str, Any], request_time: timedelta
    ) -> None:
        if not self.access_log_enabled:
            return
        try:
            fields = access_fields(resp, environ, request_time, redacting_filter())
            message = f"{fields['method']} {fields['path']} {fields['status']}"
            self.access_log.log(logging.INFO, message, extra=fields)
        except Exception:
            self.error(traceback.format_exc())
