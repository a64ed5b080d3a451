"""HTTP views: thin blueprints over the domain modules, JSON errors everywhere."""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.exceptions import HTTPException

from throttle_app.views import config_api, health, hubspot, metrics, oauth
from throttle_app.views.errors import json_error

log = logging.getLogger(__name__)


def register_views(app: Flask, bench_endpoints: bool = False) -> None:
    for module in (hubspot, config_api, health, oauth, metrics):
        app.register_blueprint(module.bp)
    if bench_endpoints:
        from throttle_app.views import bench

        app.register_blueprint(bench.bp)

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
