"""/ops: the operator page. Server-rendered (Jinja, no script), behind the operator credentials
(HTTP basic auth, operator_auth.py; no THROTTLE_DASHBOARD_PASSWORD: no page, 404).

GET /ops[?page=N&portal=P] shows the queues (ops_listing.py); POST /ops/queues/<id>/pause,
/resume and /drain act through release/queue_admin.py, each with the session's CSRF token
(csrf.py): a POST without it is a 400 and changes nothing. Answers are never cached, may not be
framed, and run no script (Content-Security-Policy).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Blueprint, Response, g, redirect, render_template, request, url_for

from throttle_app.extensions import db
from throttle_app.http_api import json_error
from throttle_app.input_fields import ASCII_INTEGER
from throttle_app.ops import ops_listing
from throttle_app.ops.csrf import FIELD, csrf_token, csrf_valid
from throttle_app.ops.operator_auth import challenge, credentials_match
from throttle_app.release import queue_admin
from throttle_app.services import Services

REALM = "Throttle operators"
# The forms' actions, each through release/queue_admin.py (as `flask throttle pause|resume|drain`).
ACTIONS: dict[str, Callable[..., None]] = {
    "pause": functools.partial(queue_admin.set_paused, paused=True),
    "resume": functools.partial(queue_admin.set_paused, paused=False),
    "drain": queue_admin.drain,
}
MAX_PAGE = 100_000


class OpsPageViews:
    """The page's blueprint, made per app (its guard is a hook on this blueprint only)."""

    def __init__(self, services: Services, clock: Callable[[], datetime] | None = None) -> None:
        self.services = services
        self.clock = clock or (lambda: datetime.now(UTC))

    def blueprint(self) -> Blueprint:
        bp = Blueprint("ops_page", __name__, template_folder="templates")
        bp.before_request(self._guard)
        bp.after_request(_headers)
        bp.add_url_rule("/ops", "index", self.index, methods=["GET"])
        bp.add_url_rule("/ops/queues/<int:queue_id>/<action>", "act", self.act, methods=["POST"])
        return bp

    def _guard(self) -> Response | tuple[Response, int] | None:
        settings = self.services.settings
        if not settings.dashboard_password:
            return json_error(404, "not found")
        if not credentials_match(settings.dashboard_username, settings.dashboard_password):
            return challenge(REALM)
        return None

    def index(self) -> str:
        now = self.clock()
        page = ops_listing.build_page(
            db.session,
            self.services.redis,
            now,
            page=_int_arg("page", 1),
            portal_id=_int_arg("portal", None),
        )
        g.csp_nonce = secrets.token_urlsafe(16)
        return render_template(
            "ops/index.html",
            view=page,
            now=now,
            portal=_int_arg("portal", None),
            csrf_field=FIELD,
            csrf_token=csrf_token(),
            nonce=g.csp_nonce,
            when=_when,
            ago=lambda value: _span(now - value) if value else "-",
            within=lambda value: _within(value, now),
        )

    def act(self, queue_id: int, action: str) -> Response | tuple[Response, int]:
        if not csrf_valid(request.form.get(FIELD)):
            return json_error(400, "missing or invalid CSRF token; reload /ops and try again")
        if action not in ACTIONS:
            return json_error(404, "not found")
        try:
            queue_admin.find_queue_id(db.session, str(queue_id))
        except queue_admin.UnknownQueue:
            return json_error(404, f"no queue {queue_id}")
        ACTIONS[action](db.session, self.services.schedule, queue_id)
        back = {"page": _int_arg("page", None, request.form)}
        return redirect(url_for(".index", **{k: v for k, v in back.items() if v}), code=303)


def _int_arg(name: str, default: int | None, source=None) -> int | None:
    """A positive integer of up to 18 digits from the query (or `source`), else `default`."""
    value = (source if source is not None else request.args).get(name, "")
    if not ASCII_INTEGER.fullmatch(value) or int(value) == 0:
        return default
    return min(int(value), MAX_PAGE) if name == "page" else int(value)


def _headers(response: Response) -> Response:
    nonce = g.get("csp_nonce", "")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:;"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return response


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _span(delta) -> str:
    seconds = int(delta.total_seconds())
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{sign}{seconds // size} {unit}"
    return f"{sign}{seconds} s"


def _within(value: datetime | None, now: datetime) -> str:
    """'2026-12-03 18:00 UTC (in 2 h)', or '... (now)' once due."""
    if value is None:
        return "-"
    if value <= now:
        return f"{_when(value)} (now)"
    return f"{_when(value)} (in {_span(value - now)})"
