"""rq-dashboard for operators: served on its own by the `dashboard` role (`standalone_app`), and
mounted in the web app at /rq only when asked for (THROTTLE_WEB_DASHBOARD), behind HTTP basic
auth in both cases.

Closed by default: web pods serve no /rq unless THROTTLE_WEB_DASHBOARD is on (start-up then
requires THROTTLE_DASHBOARD_PASSWORD; user THROTTLE_DASHBOARD_USERNAME, default `admin`), so
exposing the web Service does not expose the dashboard. rq-dashboard has no authentication of
its own, so an app-level `before_request` guards every request routed to its blueprint (or
under /rq): a hook on rq-dashboard's blueprint itself would be added to a module-level object
once per `create_app()`, and Flask refuses that once the blueprint has been registered.

Hardening around rq-dashboard 0.9.0, whose actions are unauthenticated, CSRF-unprotected POSTs:
- `RQ_DASHBOARD_DISABLE_DELETE`: job delete and queue/registry "empty" answer
  `{"status": "DISABLED"}` and their buttons are hidden;
- a state-changing request (anything but GET/HEAD/OPTIONS) must come from the dashboard's own
  origin when the browser says where it comes from (`Origin`, else `Referer`): a page on another
  site cannot make an operator's browser, which replays basic-auth credentials by itself,
  requeue or compact queues;
- "requeue all" (a GET route in rq-dashboard) only answers POST, as its own page sends it;
- jobs are read as JSON (release/job_format.py), never unpickled: rq-dashboard's configured
  serializer covers most of its reads, and the few it makes without one (a job's page, delete,
  requeue) go through JsonJob, so a pickle planted in Redis runs nothing in this process.
Credentials are compared in constant time; answers under /rq are never cached.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Flask, Response, jsonify, request

from throttle_app.config import SETTINGS, ConfigError, Settings
from throttle_app.config_refusals import check_closed_by_default
from throttle_app.config_rows import read_rows
from throttle_app.ops.operator_auth import challenge, credentials_match
from throttle_app.release.job_format import JOB_SERIALIZER, JsonJob

URL_PREFIX = "/rq"
BLUEPRINT = "rq_dashboard"
REALM = "Throttle RQ dashboard"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
POST_ONLY_ENDPOINTS = frozenset({f"{BLUEPRINT}.requeue_all"})
# The only rows the `dashboard` role reads: its pod gets no database URL, HubSpot or
# encryption secret (the chart gives it these variables and nothing else).
STANDALONE_ROWS = (
    "REDIS_URL",
    "THROTTLE_REDIS_TIMEOUT_SECONDS",
    "THROTTLE_DASHBOARD_USERNAME",
    "THROTTLE_DASHBOARD_PASSWORD",
    "THROTTLE_DEV_MODE",
)


def init_dashboard(app: Flask, settings: Settings) -> bool:
    """Mount rq-dashboard at /rq when THROTTLE_WEB_DASHBOARD asks for it; True when mounted.
    (Settings.from_env refuses THROTTLE_WEB_DASHBOARD without a dashboard password.)"""
    if not (settings.web_dashboard and settings.dashboard_password):
        return False
    _mount(
        app,
        settings.dashboard_username,
        settings.dashboard_password,
        _with_timeouts(settings.redis_url, settings.redis_timeout_seconds),
        URL_PREFIX,
    )
    return True


def standalone_app(env: Mapping[str, str] | None = None) -> Flask:
    """The `dashboard` role (scripts/entrypoint.sh, the chart's dashboard Deployment): only the
    dashboard, at /, with the same guard, under gunicorn. Reads the STANDALONE_ROWS of the
    settings table, the same way and with the same refusals as every other process (outside
    development mode, a password under 32 characters or an unverified rediss:// URL)."""
    rows = tuple(row for row in SETTINGS if row.env in STANDALONE_ROWS)
    values = read_rows(rows, os.environ if env is None else env)
    if not values["dashboard_password"]:
        raise ConfigError("the dashboard needs THROTTLE_DASHBOARD_PASSWORD")
    check_closed_by_default(values)
    app = Flask("throttle_dashboard")
    redis_url = _with_timeouts(values["redis_url"], values["redis_timeout_seconds"])
    _mount(app, values["dashboard_username"], values["dashboard_password"], redis_url, "")
    return app


def _mount(app: Flask, username: str, password: str, redis_url: str, prefix: str) -> None:
    import rq_dashboard
    from rq_dashboard.web import setup_rq_connection

    _read_jobs_as_json()
    app.config.update(RQ_DASHBOARD_REDIS_URL=redis_url, RQ_DASHBOARD_DISABLE_DELETE=True)
    setup_rq_connection(app)  # one Redis client on the app; connects on first use
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=prefix or None)
    app.before_request(_guard(username, password, prefix))
    app.after_request(_no_store(prefix))


def _read_jobs_as_json() -> None:
    """Point rq-dashboard's job reads at JOB_SERIALIZER. Its module holds one `config` for the
    process, and it calls `Job.fetch` and `requeue_job` without a serializer in a few views:
    those names are replaced in its module (idempotent; the process reads no job otherwise)."""
    from rq.job import requeue_job
    from rq_dashboard import web

    web.config.serializer = JOB_SERIALIZER
    web.Job = JsonJob
    web.requeue_job = functools.partial(requeue_job, serializer=JOB_SERIALIZER)


def _with_timeouts(url: str, seconds: float) -> str:
    """The Redis URL with socket timeouts (redis-py reads them from the query), so a stuck
    Redis fails a dashboard request instead of holding it forever. Explicit ones are kept."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return url
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for name in ("socket_timeout", "socket_connect_timeout"):
        query.setdefault(name, f"{seconds:g}")
    return urlunsplit(parts._replace(query=urlencode(query)))


def _is_dashboard_request(prefix: str) -> bool:
    """Under the prefix, or routed to rq-dashboard; everything when mounted at the root."""
    path = request.path
    if not prefix:
        return True
    return request.blueprint == BLUEPRINT or path == prefix or path.startswith(prefix + "/")


def _guard(username: str, password: str, prefix: str) -> Callable[[], Response | None]:
    def require_dashboard_credentials() -> Response | None:
        if not _is_dashboard_request(prefix):
            return None
        if not credentials_match(username, password):
            return challenge(REALM)
        if request.endpoint in POST_ONLY_ENDPOINTS and request.method != "POST":
            response = _refuse(405, "this dashboard action needs POST")
            response.headers["Allow"] = "POST"
            return response
        if request.method not in SAFE_METHODS and not _same_origin():
            return _refuse(403, "cross-origin dashboard action refused")
        return None

    return require_dashboard_credentials


def _same_origin() -> bool:
    """False when the browser names another origin; True when it names ours or none (curl)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return source is None
    parts = urlsplit(source)
    return parts.scheme == request.scheme and parts.netloc == request.host


def _refuse(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


def _no_store(prefix: str) -> Callable[[Response], Response]:
    def never_cached(response: Response) -> Response:
        if _is_dashboard_request(prefix):
            response.headers["Cache-Control"] = "no-store"
        return response

    return never_cached
