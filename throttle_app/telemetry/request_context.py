"""Per-request log context: a request id on every log line of a request, echoed to the caller.

An incoming `X-Request-Id` is honoured when it is a sane token (a load balancer's or a caller's
id; anything else could forge or break log lines), otherwise a new one is generated. The id is
bound into the logging context (telemetry.logs.bind) and returned in the `X-Request-Id` response
header, which gunicorn's access log line also carries.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

from throttle_app.telemetry.logs import bind, clear_context

REQUEST_ID_HEADER = "X-Request-Id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:+/=-]{0,127}")


def request_id_from(value: str | None) -> str:
    """The caller's request id if it is a sane token (<= 128 safe characters), else a new one."""
    if value and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def current_request_id() -> str:
    """This request's id (generated on first use if the before_request hook has not run)."""
    if "request_id" not in g:
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
    return g.request_id


def _start_request() -> None:
    clear_context()  # nothing from an earlier request on this thread or greenlet
    bind(request_id=current_request_id())


def _echo_request_id(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = current_request_id()
    return response


def _end_request(exc: BaseException | None) -> None:
    clear_context()


def init_request_context(app: Flask) -> None:
    """Register the hooks; call before any other before_request hook so its logs carry the id."""
    app.before_request(_start_request)
    app.after_request(_echo_request_id)
    app.teardown_request(_end_request)
