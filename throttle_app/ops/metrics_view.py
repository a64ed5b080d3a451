"""GET /metrics: Prometheus exposition, behind `Authorization: Bearer <THROTTLE_METRICS_TOKEN>`.

No token configured: the endpoint does not exist (404). What is exposed: telemetry/.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from prometheus_client.exposition import choose_encoder

from throttle_app.extensions import db
from throttle_app.http_api import bearer_required, bearer_token_matches, json_error
from throttle_app.ops.metrics_scrape import scrape_registry
from throttle_app.services import current_services

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    settings = current_services().settings
    if not settings.metrics_token:
        return json_error(404, "not found")
    if not bearer_token_matches(settings.metrics_token):
        return bearer_required("throttle-metrics")
    # The backlog query may take as long as a health probe may wait on the database.
    timeout_ms = max(1, int(settings.health_timeout_seconds * 1000))
    registry = scrape_registry(db.engine, current_services().redis, timeout_ms)
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = Response(encode(registry), content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response
