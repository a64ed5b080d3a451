"""Registers every feature's blueprint and the JSON error handlers (thin views, JSON errors)."""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.exceptions import HTTPException

from throttle_app.http_api import json_error
from throttle_app.intake.views import IntakeViews
from throttle_app.oauth.views import OAuthViews
from throttle_app.ops import health, metrics_view
from throttle_app.ops.ops_page import OpsPageViews
from throttle_app.release import views as release_views
from throttle_app.services import Services

log = logging.getLogger(__name__)


def register_views(app: Flask, services: Services) -> None:
    settings = services.settings
    app.register_blueprint(IntakeViews(settings, services.admission).blueprint())
    app.register_blueprint(release_views.blueprint(settings))
    oauth = OAuthViews(settings, services.redis, services.tokens, services.zones)
    app.register_blueprint(oauth.blueprint())
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics_view.bp)
    app.register_blueprint(OpsPageViews(services).blueprint())
    if settings.bench_endpoints:
        from throttle_app.ops import bench_view

        app.register_blueprint(bench_view.bp)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        message = {
            413: "request body is too large",
            404: "not found",
            405: "method not allowed",
        }.get(exc.code or 500, exc.description or exc.name)
        return json_error(exc.code or 500, message)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return json_error(500, "internal error")
