"""The release-policy input fields at the webhook: every bad value of every field is a 400 naming
it; good values are stored with the queue (policy), the execution (priority), or decide the
queue (queueName: one queue per portal and name, whatever the workflow)."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from sqlalchemy import text

from tests.release.test_policy_fields import BAD_VALUES
from tests.support.hubspot_requests import execution_payload, post_execution
from throttle_app.extensions import db
from throttle_app.release.policy import ReleasePolicy
from throttle_app.release.policy_store import read_queue_policy

BAD_PRIORITY_AND_NAMES = [
    ("priority", "10"),
    ("priority", 10),
    ("priority", -1),
    ("priority", "-1"),
    ("priority", "high"),
    ("priority", 1.5),
    ("priority", True),
    ("priority", "\u0663"),  # Arabic-Indic 3
    ("priority", [1]),
    ("queueName", "x" * 65),
    ("queueName", "a/b"),
    ("queueName", "sales:eu"),
    ("queueName", "tab\there"),
    ("queueName", "nul\x00"),
    ("queueName", "semi;colon"),
    ("queueName", 42),
    ("queueName", {"name": "x"}),
]


def payload_with(callback_id: str = "cb-1", workflow_id: int = 1791092093, **inputs):
    payload = execution_payload(callback_id=callback_id, workflow_id=workflow_id)
    payload["inputFields"].update(inputs)
    return payload


@pytest.mark.parametrize(("field", "value"), BAD_VALUES + BAD_PRIORITY_AND_NAMES)
def test_every_bad_value_is_a_400_naming_its_field(client, field, value):
    inputs = {field: value}
    if field == "windowStart":
        inputs["windowEnd"] = "17:00"
    if field == "windowEnd":
        inputs["windowStart"] = "09:00"
    response = post_execution(client, payload_with(**inputs))
    assert response.status_code == 400, response.json
    assert response.json["field"] == field
    assert field in response.json["error"]


def test_a_lone_window_end_names_the_missing_start(client):
    response = post_execution(client, payload_with(windowEnd="17:00"))
    assert response.status_code == 400
    assert response.json["field"] == "windowStart"


def stored_queue(app, callback_id: str = "cb-1"):
    with app.app_context():
        row = db.session.execute(
            text(
                "SELECT q.id, q.queue_key, q.workflow_id, q.action_id, q.queue_name,"
                " q.max_throughput, e.priority FROM action_executions e"
                " JOIN throttle_queues q ON q.id = e.queue_id WHERE e.callback_id = :c"
            ),
            {"c": callback_id},
        ).one()
        policy = read_queue_policy(db.session, row.id)
        db.session.remove()
    return row, policy


def test_no_policy_fields_store_todays_queue(app, client):
    assert post_execution(client, payload_with()).status_code == 200
    row, stored = stored_queue(app)
    assert stored.policy == ReleasePolicy()
    assert row.priority == 0
    assert row.queue_name is None
    assert str(stored.zone) == "UTC"


def test_the_policy_and_priority_are_stored(app, client):
    response = post_execution(
        client,
        payload_with(
            mode="spread",
            releaseDays="MON;WED;FRI",
            windowStart="22:00",
            windowEnd="06:00",
            timeZone="Asia/Kolkata",
            startAt="1805007600000",
            priority="7",
        ),
    )
    assert response.status_code == 200
    row, stored = stored_queue(app)
    assert stored.policy == ReleasePolicy(
        mode="spread",
        days=frozenset({1, 3, 5}),
        window_start=time(22),
        window_end=time(6),
        time_zone="Asia/Kolkata",
        start_at=datetime(2027, 3, 14, 7, tzinfo=UTC),
    )
    assert row.priority == 7
    assert str(stored.zone) == "Asia/Kolkata"


def test_the_latest_execution_decides_the_queues_policy(app, client):
    post_execution(client, payload_with("cb-1", mode="spread", releaseDays="SAT"))
    post_execution(client, payload_with("cb-2", windowStart="09:00", windowEnd="10:00"))
    _, stored = stored_queue(app, "cb-1")
    assert stored.policy == ReleasePolicy(window_start=time(9), window_end=time(10))


def test_the_portals_zone_is_the_default(app, client):
    post_execution(client, payload_with(windowStart="09:00", windowEnd="10:00"))
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO oauth_tokens (portal_id, access_token, refresh_token, expires_at,"
                " time_zone) VALUES (50467010, 'a', 'r', now(), 'Europe/Berlin')"
            )
        )
        db.session.commit()
    _, stored = stored_queue(app)
    assert (stored.portal_zone, str(stored.zone)) == ("Europe/Berlin", "Europe/Berlin")


def test_a_queue_name_is_one_queue_for_every_workflow_of_the_portal(app, client):
    post_execution(client, payload_with("cb-1", workflow_id=11, queueName=" Sales EU "))
    post_execution(client, payload_with("cb-2", workflow_id=22, queueName="Sales EU"))
    post_execution(client, payload_with("cb-3", workflow_id=22, queueName="sales eu"))
    first, _ = stored_queue(app, "cb-1")
    second, _ = stored_queue(app, "cb-2")
    other, _ = stored_queue(app, "cb-3")
    assert first.id == second.id != other.id  # names are case-sensitive
    assert first.queue_key == "50467010:name:Sales EU"
    assert (first.workflow_id, first.action_id, first.queue_name) == (
        0,
        "queue:Sales EU",
        "Sales EU",
    )


def test_the_same_name_in_another_portal_is_another_queue(app, client):
    post_execution(client, payload_with("cb-1", queueName="shared"))
    payload = payload_with("cb-2", queueName="shared")
    payload["origin"]["portalId"] = 999
    post_execution(client, payload)
    assert stored_queue(app, "cb-1")[0].id != stored_queue(app, "cb-2")[0].id


def test_a_shared_queue_takes_the_latest_rate(app, client):
    post_execution(client, payload_with("cb-1", workflow_id=11, queueName="q", maxThroughPut="5"))
    post_execution(client, payload_with("cb-2", workflow_id=22, queueName="q", maxThroughPut="9"))
    assert stored_queue(app, "cb-1")[0].max_throughput == 9


def test_a_sixty_four_character_unicode_name_fits(client, app):
    name = "Ä" * 64
    assert post_execution(client, payload_with(queueName=name)).status_code == 200
    assert stored_queue(app)[0].action_id == "queue:" + name
