"""The automation v4 callback-completion endpoints (single and batch).

A call goes through, in order: bearer-token check (401, not charged to any portal), the portal's
rolling rate window (429; every authenticated call counts, whatever its answer), forced 429s,
scope check (403), injected 5xx faults (the next N calls, every Nth call, a random share), body
validation (415/400), the batch limit (400), bad callbackIds (400) and finally the completions
are recorded (204). Any answer but 204 completes nothing. Every answer past the token check
carries HubSpot's `X-HubSpot-RateLimit-Max/-Remaining/-Interval-Milliseconds` headers.
Simulated latency is added after the decision, so a client that times out may still have
completed its callbacks, as with the real service.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fake_hubspot.messages import (
    Reply,
    Request,
    api_error,
    correlation_id,
    json_reply,
    server_error,
)
from fake_hubspot.ratelimit import Verdict
from fake_hubspot.state import Hub
from fake_hubspot.tokens import AccessToken

BATCH_PATH = "/automation/v4/actions/callbacks/complete"
SINGLE_PREFIX = "/automation/v4/actions/callbacks/"
STATES = ("SUCCESS", "FAIL_CONTINUE")
MAX_CALLBACK_ID_BYTES = 255
REQUIRED_SCOPE = "automation"

NO_CREDENTIALS = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
    "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


class Invalid(Exception):
    """A request body HubSpot would refuse (400 VALIDATION_ERROR unless ``status`` says else)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def complete(hub: Hub, req: Request, callback_id: str | None) -> Reply:
    """Answer one completion call; ``callback_id`` is None for the batch endpoint."""
    with hub.lock:
        reply = _decide(hub, req, callback_id)
        reply.delay = hub.settings.callback_latency
    return reply


def _authenticate(hub: Hub, req: Request) -> AccessToken | Reply:
    """The live access token of the bearer header, or the 401 HubSpot answers without one."""
    scheme, _, credential = (req.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return api_error(401, NO_CREDENTIALS, "INVALID_AUTHENTICATION")
    found = hub.tokens.lookup(credential.strip())
    if found.problem == "expired":
        message = (
            f"The OAuth token used to make this call expired {found.expired_for} second(s) ago."
        )
        return api_error(401, message, "EXPIRED_AUTHENTICATION")
    if found.token is None:
        return api_error(
            401, "The OAuth token used to make this call is invalid.", "INVALID_AUTHENTICATION"
        )
    return found.token


def rate_limited(hub: Hub, verdict: Verdict) -> Reply:
    """HubSpot's 429 for the portal's rolling window (counted in the stats)."""
    hub.rate_limited += 1
    cid = correlation_id()
    payload = {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": cid,
        "policyName": "TEN_SECONDLY_ROLLING",
    }
    reply = json_reply(429, payload, {"X-HubSpot-Correlation-Id": cid})
    settings = hub.settings
    if settings.retry_after_header:
        fixed = settings.retry_after
        reply.headers["Retry-After"] = str(max(1, verdict.retry_after) if fixed is None else fixed)
    return reply


def admit(hub: Hub, req: Request, method: str) -> tuple[AccessToken, Verdict] | Reply:
    """The steps every API call takes first: the method (405), the bearer token (401, charged
    to no portal), then one hit on the portal's rolling window (judged by the caller)."""
    if req.method != method:
        return api_error(405, f"{req.method} is not allowed here", "VALIDATION_ERROR")
    token = _authenticate(hub, req)
    if isinstance(token, Reply):
        return token
    settings = hub.settings
    verdict = hub.limiter.hit(
        token.portal_id, time.monotonic(), settings.rate_limit, settings.rate_window
    )
    return token, verdict


def _decide(hub: Hub, req: Request, callback_id: str | None) -> Reply:
    admitted = admit(hub, req, "POST")
    if isinstance(admitted, Reply):
        return admitted
    token, verdict = admitted
    has_scope = REQUIRED_SCOPE in token.scopes
    reply = _answer(hub, req, callback_id, token.portal_id, verdict, has_scope)
    reply.headers.update(verdict.headers())
    return reply


def _answer(
    hub: Hub,
    req: Request,
    callback_id: str | None,
    portal_id: int,
    verdict: Verdict,
    has_scope: bool,
) -> Reply:
    settings = hub.settings
    if not verdict.allowed:
        return rate_limited(hub, verdict)
    if settings.force_429.get(portal_id, 0) > 0:
        settings.force_429[portal_id] -= 1
        if not settings.force_429[portal_id]:
            del settings.force_429[portal_id]
        return rate_limited(hub, verdict)
    if not has_scope:
        return api_error(
            403,
            "This app hasn't been granted all required scopes to make this call.",
            "MISSING_SCOPES",
            errors=[
                {
                    "message": "One or more of the following scopes are required.",
                    "context": {"requiredGranularScopes": [REQUIRED_SCOPE]},
                }
            ],
        )
    hub.fault_calls += 1  # the calls the faults below judge (authorized, admitted, in scope)
    if settings.fail_next > 0:
        settings.fail_next -= 1
        return server_error(settings.fail_next_status)
    if settings.fail_every and hub.fault_calls % settings.fail_every == 0:
        return server_error(settings.fail_every_status)
    if settings.error_rate and hub.rng.random() < settings.error_rate:
        return server_error(hub.rng.choice(settings.error_statuses))
    try:
        items = _parse(req, callback_id)
    except Invalid as problem:
        return api_error(problem.status, str(problem), "VALIDATION_ERROR")
    if callback_id is None:
        hub.batch_sizes.append(len(items))
        if len(items) > settings.batch_limit:
            return api_error(
                400,
                f"Batch size of {len(items)} exceeds the maximum of {settings.batch_limit}",
                "VALIDATION_ERROR",
            )
    bad = sorted({cid for cid, _ in items if cid in settings.bad_callback_ids})
    if bad:
        return api_error(
            400,
            f"Invalid callbackId(s): {', '.join(bad)}",
            "VALIDATION_ERROR",
            context={"callbackId": bad},
        )
    partial = {cid for cid, _ in items if cid in settings.partial_callback_ids}
    if partial and callback_id is None:  # the secondary schema's PARTIAL answer (hubspot.md)
        _record(hub, portal_id, [item for item in items if item[0] not in partial], batch=True)
        errors = [
            {"callbackId": cid, "message": "callback is not open", "category": "VALIDATION_ERROR"}
            for cid in sorted(partial)
        ]
        return json_reply(200, {"status": "PARTIAL", "errors": errors})
    _record(hub, portal_id, items, batch=callback_id is None)
    return Reply(204)


def _record(hub: Hub, portal_id: int, items: list[tuple[str, dict[str, str]]], batch: bool) -> None:
    batch_id = hub.next_batch_id()
    now = time.time()
    for cid, output_fields in items:
        hub.records.append(
            {
                "callback_id": cid,
                "portal_id": portal_id,
                "state": output_fields["hs_execution_state"],
                "output_fields": output_fields,
                "time": now,
                "batch_id": batch_id,
                "batch_size": len(items),
                "batch": batch,
            }
        )


def _parse(req: Request, callback_id: str | None) -> list[tuple[str, dict[str, str]]]:
    if req.content_type() != "application/json":
        raise Invalid("Unsupported Media Type: send application/json", 415)
    try:
        body = req.json()
    except (ValueError, UnicodeDecodeError) as problem:
        raise Invalid(f"Invalid input JSON: {problem}") from None
    if not isinstance(body, dict):
        raise Invalid("The request body must be a JSON object")
    if callback_id is not None:
        return [(_callback_id(callback_id), _output_fields(body, "outputFields"))]
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise Invalid("inputs must be a non-empty array")
    items = []
    for index, item in enumerate(inputs):
        where = f"inputs[{index}]"
        if not isinstance(item, dict):
            raise Invalid(f"{where} must be an object")
        if "callbackId" not in item:
            raise Invalid(f"{where}.callbackId is required")
        items.append(
            (_callback_id(item["callbackId"]), _output_fields(item, where + ".outputFields"))
        )
    return items


def _callback_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("callbackId must be a non-empty string")
    if len(value.encode("utf-8")) > MAX_CALLBACK_ID_BYTES:
        raise Invalid(f"callbackId is longer than {MAX_CALLBACK_ID_BYTES} bytes")
    return value


def _output_fields(container: dict[str, Any], where: str) -> dict[str, str]:
    fields = container.get("outputFields")
    if not isinstance(fields, dict):
        raise Invalid(f"{where} is required and must be an object")
    for key, value in fields.items():
        if not isinstance(value, str):
            raise Invalid(f"{where}.{key} must be a string, got {json.dumps(value)}")
    state = fields.get("hs_execution_state")
    if state not in STATES:
        raise Invalid(f"{where}.hs_execution_state must be one of {', '.join(STATES)}")
    return dict(fields)
