"""The web's composition root: settings, extensions, the process's services, views and CLI."""

from __future__ import annotations

from flask import Flask

from throttle_app.config import Settings
from throttle_app.extensions import db, migrate
from throttle_app.ops.readiness import MIGRATIONS_DIR
from throttle_app.services import EXTENSION_KEY, build_services, redis_connection
from throttle_app.telemetry.logs import configure_logging


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app and every service its process uses. Reads every setting first; opens no
    connection (the database pool and Redis connect on first use)."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, secrets=settings.secrets, json_lines=settings.log_json)
    app = Flask(__name__)
    app.config.update(
        THROTTLE_SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        # The session cookie carries only the operator page's CSRF token (ops/csrf.py).
        SESSION_COOKIE_NAME="throttle_session",
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings),
    )
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    with app.app_context():
        services = build_services(settings, redis_connection(settings), db.engine)
    app.extensions[EXTENSION_KEY] = services
    if settings.proxy_fix_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.proxy_fix_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    from throttle_app.ops.cli import register_cli
    from throttle_app.ops.dashboard import init_dashboard
    from throttle_app.ops.views import register_views
    from throttle_app.telemetry.request_context import init_request_context

    init_request_context(app)  # first: every later hook and view logs with the request id
    register_views(app, services)
    init_dashboard(app, settings)  # rq-dashboard at /rq only with THROTTLE_WEB_DASHBOARD
    register_cli(app, services)
    return app


def engine_options(settings: Settings) -> dict:
    """Pool sized for the greenlets that reach the database, with timeouts on every wait."""
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_seconds,
        "pool_pre_ping": True,
        "pool_recycle": 1800,
        "connect_args": {
            "connect_timeout": settings.db_connect_timeout_seconds,
            "application_name": "throttle",
            # No JIT: the service's statements are short index lookups, and compiling a plan
            # whose estimate crosses jit_above_cost costs more than running it.
            "options": f"-c statement_timeout={settings.db_statement_timeout_ms} -c jit=off",
            # A dead peer (failover, partition without a reset) is noticed in about 25 s instead
            # of the kernel's 15 minutes, on idle pooled connections and mid-query alike (idle:
            # 10 s + 3 probes x 5 s; unacknowledged data: the 25 s user timeout; computed from
            # these settings, not measured).
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 25_000,
        },
    }
