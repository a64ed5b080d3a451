"""POST /api/hubspot/action: HubSpot's execution request for our custom workflow action."""

from __future__ import annotations

import functools
import json
import logging

from flask import Blueprint, Response, current_app, request

from throttle_app.extensions import current_settings, db
from throttle_app.http_api import json_error
from throttle_app.hubspot.signatures import SignatureError, verify_request
from throttle_app.input_fields import FieldError
from throttle_app.intake.admission import Admission, AdmissionUnavailable, Answer
from throttle_app.intake.execution_request import parse_execution_request
from throttle_app.telemetry import metrics
from throttle_app.telemetry.logs import bind

bp = Blueprint("hubspot", __name__)
log = logging.getLogger(__name__)


@bp.post("/api/hubspot/action")
@metrics.count_webhook
def execution_request():
    settings = current_settings()
    body = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413
    try:
        verify_request(
            settings.hubspot_client_secret, request.method, signed_uri(), body, request.headers
        )
    except SignatureError as exc:
        return json_error(401, f"invalid signature: {exc}")
    try:
        execution = parse_execution_request(body)
    except FieldError as exc:
        return json_error(400, str(exc), field=exc.field)
    bind(portal_id=execution.portal_id, queue=execution.queue_key)
    try:
        with metrics.time_admission():
            answer = admission().admit(execution)
    except AdmissionUnavailable as exc:
        current_app.logger.warning("admission unavailable: %s", exc)
        response, status = json_error(503, "temporarily unable to store the execution; retry")
        response.headers["Retry-After"] = str(settings.retry_after_seconds)
        return response, status
    if answer.conflict:
        return json_error(409, "callbackId already belongs to another queue", field="callbackId")
    metrics.note_webhook_answer(answer)
    return Response(answer_body(answer), mimetype="application/json")


@functools.lru_cache(maxsize=1024)
def answer_body(answer: Answer) -> bytes:
    """The JSON body for an answer. Nearly every answer is the same BLOCK with the full hold,
    so the serialized bytes are kept instead of being encoded again for every request."""
    return json.dumps({"outputFields": answer.output_fields()}, separators=(",", ":")).encode()


def signed_uri() -> str:
    """The URL HubSpot called, as it signed it: PUBLIC_BASE_URL + the raw path and query."""
    settings = current_settings()
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if not raw:
        query = request.query_string.decode("latin-1")
        raw = request.path + (f"?{query}" if query else "")
    if settings.public_base_url:
        return settings.public_base_url + raw
    return request.host_url.rstrip("/") + raw


def admission() -> Admission:
    """This process's admission service (created on first use, after gunicorn forked)."""
    service = current_app.extensions.get("throttle_admission")
    if service is None:
        settings = current_settings()
        service = Admission(
            db.engine,
            hold=settings.hold_duration,
            deadline_seconds=settings.admission_deadline_seconds,
            writers=settings.admission_writers,
            max_batch=settings.admission_batch_max,
            after_commit=_waker(),
        )
        service = current_app.extensions.setdefault("throttle_admission", service)
    return service


def _waker():
    """After a batch commits: wake its queues' release jobs (coalesced; the cleaner repairs)."""
    from throttle_app.release.schedule import WakeBatcher, app_schedule

    return WakeBatcher(app_schedule()).add
