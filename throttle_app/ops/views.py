"""Registers every feature's blueprint and the JSON error handlers (thin views, JSON errors)."""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.exceptions import HTTPException

from throttle_app.http_api import json_error
from throttle_app.intake import views as intake_views
from throttle_app.oauth import views as oauth_views
from throttle_app.ops import health, metrics_view
from throttle_app.release import views as release_views

log = logging.getLogger(__name__)


def register_views(app: Flask, bench_endpoints: bool = False) -> None:
    for module in (intake_views, release_views, health, oauth_views, metrics_view):
        app.register_blueprint(module.bp)
    if bench_endpoints:
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
