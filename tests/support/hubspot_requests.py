"""Builders for signed HubSpot execution requests, as HubSpot sends them."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.conftest import TEST_CLIENT_SECRET
from throttle_app.hubspot.signatures import v2_signature, v3_signature

ACTION_URL = "http://localhost/api/hubspot/action"


def execution_payload(
    callback_id: str = "ap-50467010-2384423471376-1-0",
    portal_id: int = 50467010,
    workflow_id: int = 1791092093,
    action_id: int | None = 1,
    max_throughput: Any = "50",
    time_value: Any = "1",
    period: Any = "hours",
) -> dict[str, Any]:
    context: dict[str, Any] = {"workflowId": workflow_id, "source": "WORKFLOWS"}
    if action_id is not None:
        context["actionId"] = action_id
    return {
        "callbackId": callback_id,
        "origin": {
            "portalId": portal_id,
            "actionDefinitionId": 259551814,
            "actionDefinitionVersion": 1,
            "actionExecutionIndexIdentifier": {
                "enrollmentId": 2384423471376,
                "actionExecutionIndex": 0,
            },
        },
        "context": context,
        "object": {"objectId": 153847279758, "objectType": "CONTACT"},
        "inputFields": {"maxThroughPut": max_throughput, "time": time_value, "period": period},
    }


def signed_headers(
    body: bytes,
    version: str = "v2",
    url: str = ACTION_URL,
    secret: str = TEST_CLIENT_SECRET,
    timestamp_ms: int | None = None,
) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if version == "v3":
        stamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
        headers["X-HubSpot-Signature-v3"] = v3_signature(secret, "POST", url, body, stamp)
        headers["X-HubSpot-Request-Timestamp"] = stamp
    else:
        headers["X-HubSpot-Signature"] = v2_signature(secret, "POST", url, body)
        headers["X-HubSpot-Signature-Version"] = "v2"
    return headers


def post_execution(client, payload: dict[str, Any] | bytes, version: str = "v2", **kwargs):
    """POST a signed execution request through a Flask test client."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(
        "/api/hubspot/action", data=body, headers=signed_headers(body, version, **kwargs)
    )
