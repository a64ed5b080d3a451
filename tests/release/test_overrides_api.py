"""The config API: bearer auth in constant time, upsert on (portal_id, action_id), 422, 404."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.conftest import CONFIG_AUTH
from throttle_app.extensions import db

AUTH = CONFIG_AUTH
VALID = {
    "portal_id": 42,
    "action_id": "7",
    "max_throughput": 50,
    "time_period": 1,
    "time_unit": "hours",
}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic dGVzdA=="},
        {"Authorization": "Bearer "},
    ],
)
def test_requests_without_the_token_are_refused(client, headers):
    assert client.post("/api/config", json=VALID, headers=headers).status_code == 401
    assert client.get("/api/config/42/7", headers=headers).status_code == 401


def test_no_configured_token_means_the_api_is_closed(make_app):
    client = make_app(config_api_token=None).test_client()
    response = client.post("/api/config", json=VALID, headers={"Authorization": "Bearer "})
    assert response.status_code == 403
    assert client.get("/api/config/42/7", headers=AUTH).status_code == 403


def test_upsert_creates_then_updates_one_row(app, client):
    created = client.post("/api/config", json=VALID, headers=AUTH)
    assert created.status_code == 200
    assert created.json["max_throughput"] == 50
    updated = client.post(
        "/api/config", json={**VALID, "max_throughput": 80, "time_unit": "minute"}, headers=AUTH
    )
    assert updated.status_code == 200
    shown = client.get("/api/config/42/7", headers=AUTH)
    assert shown.status_code == 200
    assert (shown.json["max_throughput"], shown.json["time_unit"]) == (80, "minutes")
    with app.app_context():
        assert db.session.execute(text("SELECT count(*) FROM throttle_configs")).scalar() == 1


def test_missing_config_is_a_json_404(client):
    response = client.get("/api/config/42/nope", headers=AUTH)
    assert response.status_code == 404
    assert "no config" in response.json["error"]


def test_invalid_fields_are_a_422_with_every_error(client):
    body = {"portal_id": "abc", "max_throughput": 0, "time_period": 1, "time_unit": "weeks"}
    response = client.post("/api/config", json=body, headers=AUTH)
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"portal_id", "action_id", "max_throughput", "time_unit"}


def test_limits_match_the_action(client):
    too_many = client.post("/api/config", json={**VALID, "max_throughput": 10001}, headers=AUTH)
    too_long = client.post(
        "/api/config", json={**VALID, "time_period": 29, "time_unit": "days"}, headers=AUTH
    )
    assert too_many.json["errors"] == {"max_throughput": "must be at most 10000"}
    assert too_long.json["errors"] == {"time_period": "window must be at most 28 days"}


def test_non_json_body_is_a_422(client):
    response = client.post("/api/config", data=b"nope", headers=AUTH)
    assert response.status_code == 422
    assert "body" in response.json["errors"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"portal_id": 10**30}, "portal_id"),  # beyond bigint
        ({"action_id": "a\x00b"}, "action_id"),  # PostgreSQL text has no NUL
        ({"action_id": "\ud800"}, "action_id"),  # a lone surrogate is not UTF-8
        ({"time_period": "\u00b2"}, "time_period"),  # "²" passes str.isdigit()
    ],
)
def test_unstorable_values_are_a_422_not_a_500(client, change, field):
    response = client.post("/api/config", json={**VALID, **change}, headers=AUTH)
    assert response.status_code == 422
    assert set(response.json["errors"]) == {field}


def test_an_action_id_no_config_can_have_is_a_404(client):
    assert client.get("/api/config/42/a%00b", headers=AUTH).status_code == 404


def test_a_named_queue_is_overridden_through_queue_and_its_name(client):
    name = "queue:" + "Ä" * 64
    response = client.post("/api/config", json={**VALID, "action_id": name}, headers=AUTH)
    assert response.status_code == 200, response.json
    assert client.get(f"/api/config/42/{name}", headers=AUTH).json["action_id"] == name
    too_long = {**VALID, "action_id": name + "xyz"}
    assert set(client.post("/api/config", json=too_long, headers=AUTH).json["errors"]) == {
        "action_id"
    }
