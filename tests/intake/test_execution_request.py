"""Validation of HubSpot execution requests as the original did it: 400 naming the field."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from tests.support.hubspot_requests import execution_payload, post_execution, signed_headers


def _without(payload: dict, *path: str) -> dict:
    node = payload
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return payload


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: p["inputFields"].update(maxThroughPut="0"), "maxThroughPut"),
        (lambda p: p["inputFields"].update(maxThroughPut="-3"), "maxThroughPut"),
        (lambda p: p["inputFields"].update(maxThroughPut="ten"), "maxThroughPut"),
        (lambda p: p["inputFields"].update(maxThroughPut="1.5"), "maxThroughPut"),
        (lambda p: p["inputFields"].update(maxThroughPut="10001"), "maxThroughPut"),
        (lambda p: p["inputFields"].update(maxThroughPut=True), "maxThroughPut"),
        (lambda p: p["inputFields"].update(maxThroughPut="\u00b2"), "maxThroughPut"),  # "²"
        (lambda p: _without(p, "inputFields", "maxThroughPut"), "maxThroughPut"),
        (lambda p: p["inputFields"].update(time="0"), "time"),
        (lambda p: p["inputFields"].update(time="abc"), "time"),
        (lambda p: p["inputFields"].update(time="9" * 5000), "time"),  # int() refuses 4300+
        (lambda p: _without(p, "inputFields", "time"), "time"),
        (lambda p: p["inputFields"].update(time="29", period="days"), "time"),
        (lambda p: p["inputFields"].update(period="weeks"), "period"),
        (lambda p: p["inputFields"].update(period=3), "period"),
        (lambda p: _without(p, "inputFields", "period"), "period"),
        (lambda p: _without(p, "inputFields"), "inputFields"),
        (lambda p: _without(p, "callbackId"), "callbackId"),
        (lambda p: p.update(callbackId=""), "callbackId"),
        (lambda p: p.update(callbackId="x" * 256), "callbackId"),
        (lambda p: p.update(callbackId=42), "callbackId"),
        (lambda p: p.update(callbackId="ab\ud800"), "callbackId"),  # a lone surrogate
        (lambda p: p.update(callbackId="a\x00b"), "callbackId"),  # PostgreSQL text has no NUL
        (lambda p: _without(p, "origin", "portalId"), "origin.portalId"),
        (lambda p: p["origin"].update(portalId="abc"), "origin.portalId"),
        (lambda p: p["origin"].update(portalId="\u0663"), "origin.portalId"),  # Arabic-Indic 3
        (lambda p: _without(p, "origin"), "origin"),
        (lambda p: _without(p, "context", "workflowId"), "context.workflowId"),
        (lambda p: p["context"].update(actionId="x"), "context.actionId"),
    ],
)
def test_invalid_field_is_a_400_naming_it(client, change, field):
    payload = execution_payload()
    change(payload)
    response = post_execution(client, payload)
    assert response.status_code == 400, response.json
    assert response.json["field"] == field
    assert field in response.json["error"]


def test_missing_action_id_without_fallback_is_a_400(client):
    payload = execution_payload(action_id=None)
    del payload["origin"]["actionDefinitionId"]
    response = post_execution(client, payload)
    assert response.status_code == 400
    assert response.json["field"] == "context.actionId"


@pytest.mark.parametrize(
    ("max_value", "time_value", "period"),
    [("50", "1", "hours"), (50, 1, "hour"), ("10000", "28", "days"), ("1", "1", "Seconds")],
)
def test_valid_inputs_as_numbers_or_strings(client, max_value, time_value, period):
    payload = execution_payload(max_throughput=max_value, time_value=time_value, period=period)
    assert post_execution(client, payload).status_code == 200


def test_extra_keys_are_ignored(client):
    payload = execution_payload()
    payload["fields"] = {"x": 1}
    payload["origin"]["userId"] = 7
    payload["object"]["properties"] = {"email": "a@example.com"}
    assert post_execution(client, payload).status_code == 200


@pytest.mark.parametrize(
    "body", [b"{not json", b"", b"[1, 2]", b"\xff\xfe", b"[" * 30_000 + b"]" * 30_000]
)
def test_malformed_json_is_a_400(client, body):
    response = post_execution(client, body)
    assert response.status_code == 400
    assert response.json["field"] == "body"


def test_unstorable_optional_object_fields_are_dropped_not_fatal(app, client):
    from throttle_app.extensions import db

    payload = execution_payload(callback_id="odd-object")
    payload["object"] = {"objectId": "\u00b3", "objectType": "CON\x00TACT"}
    assert post_execution(client, payload).status_code == 200
    with app.app_context():
        row = db.session.execute(
            text("SELECT object_id, object_type FROM action_executions WHERE callback_id = :c"),
            {"c": "odd-object"},
        ).one()
    assert tuple(row) == (None, None)


def test_body_over_the_cap_is_a_413(client):
    payload = execution_payload()
    payload["padding"] = "x" * (70 * 1024)
    body = json.dumps(payload).encode()
    response = client.post("/api/hubspot/action", data=body, headers=signed_headers(body))
    assert response.status_code == 413
    assert response.is_json and "too large" in response.json["error"]


def test_action_id_falls_back_to_definition_and_index(app, client):
    from throttle_app.extensions import db
    from throttle_app.models import ThrottleQueue

    assert post_execution(client, execution_payload(action_id=None)).status_code == 200
    with app.app_context():
        queue = db.session.query(ThrottleQueue).one()
        assert queue.action_id == "259551814-0"
