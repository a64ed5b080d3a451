"""POST /api/hubspot/action: HubSpot's execution request for our custom workflow action."""

from __future__ import annotations

import functools
import json
import logging

from flask import Blueprint, Response, request

from throttle_app.config import Settings
from throttle_app.http_api import json_error
from throttle_app.hubspot.signatures import SignatureError, verify_request
from throttle_app.input_fields import FieldError
from throttle_app.intake.admission import Admission, AdmissionUnavailable, Answer
from throttle_app.intake.execution_request import parse_execution_request
from throttle_app.telemetry import web_metrics
from throttle_app.telemetry.logs import bind

log = logging.getLogger(__name__)


class IntakeViews:
    """The webhook for one app: its settings and its process's admission service."""

    def __init__(self, settings: Settings, admission: Admission) -> None:
        self._settings = settings
        self._admission = admission

    def blueprint(self) -> Blueprint:
        bp = Blueprint("hubspot", __name__)
        view = web_metrics.count_webhook(self.execution_request)
        bp.add_url_rule("/api/hubspot/action", "execution_request", view, methods=["POST"])
        return bp

    def execution_request(self) -> Response | tuple[Response, int]:
        settings = self._settings
        body = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413
        try:
            verify_request(
                settings.hubspot_client_secret,
                request.method,
                signed_uri(settings.public_base_url),
                body,
                request.headers,
                require_v3=settings.require_signature_v3,
            )
        except SignatureError as exc:
            return json_error(401, f"invalid signature: {exc}")
        try:
            execution = parse_execution_request(body)
        except FieldError as exc:
            return json_error(400, str(exc), field=exc.field)
        bind(portal_id=execution.portal_id, queue=execution.queue_key)
        try:
            with web_metrics.time_admission():
                answer = self._admission.admit(execution)
        except AdmissionUnavailable as exc:
            log.warning("admission unavailable: %s", exc)
            response, status = json_error(503, "temporarily unable to store the execution; retry")
            response.headers["Retry-After"] = str(settings.retry_after_seconds)
            return response, status
        if answer.conflict:
            return json_error(
                409, "callbackId already belongs to another queue", field="callbackId"
            )
        web_metrics.note_webhook_answer(answer)
        return Response(answer_body(answer), mimetype="application/json")


@functools.lru_cache(maxsize=1024)
def answer_body(answer: Answer) -> bytes:
    """The JSON body for an answer. Nearly every answer is the same BLOCK with the full hold,
    so the serialized bytes are kept instead of being encoded again for every request."""
    return json.dumps({"outputFields": answer.output_fields()}, separators=(",", ":")).encode()


def signed_uri(public_base_url: str | None) -> str:
    """The URL HubSpot called, as it signed it: PUBLIC_BASE_URL + the raw path and query."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if not raw:
        query = request.query_string.decode("latin-1")
        raw = request.path + (f"?{query}" if query else "")
    if public_base_url:
        return public_base_url + raw
    return request.host_url.rstrip("/") + raw
