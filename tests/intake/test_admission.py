"""Durable, idempotent admission: stored before the answer, one row per callbackId."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
from sqlalchemy import text

from tests.conftest import TEST_DATABASE_URL
from tests.support.hubspot_requests import execution_payload, post_execution
from throttle_app.extensions import db


def rows(app, sql: str = "SELECT callback_id, state FROM action_executions ORDER BY id"):
    with app.app_context():
        return db.session.execute(text(sql)).all()


def set_state(app, callback_id: str, state: str, hold_sql: str = "hold_expires_at") -> None:
    with app.app_context():
        db.session.execute(
            text(
                f"UPDATE action_executions SET state = :s, hold_expires_at = {hold_sql}"
                " WHERE callback_id = :c"
            ),
            {"s": state, "c": callback_id},
        )
        db.session.commit()


def test_first_delivery_blocks_with_the_configured_hold(app, client):
    response = post_execution(client, execution_payload(callback_id="cb-1"))
    assert response.status_code == 200
    assert response.json == {
        "outputFields": {"hs_execution_state": "BLOCK", "hs_expiration_duration": "P4W"}
    }
    assert rows(app) == [("cb-1", "pending")]


def test_stored_row_carries_queue_identity_rate_and_hold(app, client):
    payload = execution_payload(
        callback_id="cb-1", max_throughput="7", time_value="2", period="minutes"
    )
    post_execution(client, payload)
    row = rows(
        app,
        "SELECT e.portal_id, e.workflow_id, e.action_id, e.max_throughput,"
        " e.period_seconds, q.queue_key, q.max_throughput AS qmax,"
        " round(extract(epoch FROM e.hold_expires_at - e.created_at)) AS hold"
        " FROM action_executions e JOIN throttle_queues q ON q.id = e.queue_id",
    )[0]
    assert (row.portal_id, row.workflow_id, row.action_id) == (50467010, 1791092093, "1")
    assert (row.max_throughput, row.period_seconds, row.qmax) == (7, 120, 7)
    assert row.queue_key == "50467010:1791092093:1"
    assert row.hold == 28 * 86400


def test_hold_duration_is_a_setting(make_app):
    from datetime import timedelta

    client = make_app(hold_duration=timedelta(days=7)).test_client()
    response = post_execution(client, execution_payload())
    assert response.json["outputFields"]["hs_expiration_duration"] == "P1W"


def test_replay_answers_remaining_hold_and_keeps_one_row(app, client):
    payload = execution_payload(callback_id="cb-1")
    post_execution(client, payload)
    set_state(app, "cb-1", "pending", "now() + interval '3 days 4 hours'")
    replay = post_execution(client, payload)
    assert replay.status_code == 200
    fields = replay.json["outputFields"]
    assert fields["hs_execution_state"] == "BLOCK"
    assert fields["hs_expiration_duration"] in ("P3DT4H", "P3DT3H59M59S")
    assert len(rows(app)) == 1


@pytest.mark.parametrize(
    ("state", "answer"),
    [("completed", "SUCCESS"), ("failed", "FAIL_CONTINUE"), ("expired", "FAIL_CONTINUE")],
)
def test_replay_answers_from_the_stored_state(app, client, state, answer):
    payload = execution_payload(callback_id="cb-1")
    post_execution(client, payload)
    set_state(app, "cb-1", state)
    replay = post_execution(client, payload)
    assert replay.status_code == 200
    assert replay.json == {"outputFields": {"hs_execution_state": answer}}
    assert rows(app) == [("cb-1", state)]


def test_replay_after_the_hold_ran_out_is_fail_continue(app, client):
    payload = execution_payload(callback_id="cb-1")
    post_execution(client, payload)
    set_state(app, "cb-1", "pending", "now() - interval '1 second'")
    assert post_execution(client, payload).json["outputFields"] == {
        "hs_execution_state": "FAIL_CONTINUE"
    }


def test_same_callback_id_for_another_queue_is_a_409(app, client):
    post_execution(client, execution_payload(callback_id="cb-1", workflow_id=1))
    response = post_execution(client, execution_payload(callback_id="cb-1", workflow_id=2))
    assert response.status_code == 409
    assert response.json["field"] == "callbackId"
    assert len(rows(app)) == 1


def test_concurrent_deliveries_share_commits_and_keep_one_row_each(app, client):
    """64 threads, 200 requests, 50 of them replays: 150 rows, every answer a 200."""
    ids = [f"cb-{n}" for n in range(150)] + [f"cb-{n}" for n in range(50)]

    def send(callback_id: str) -> int:
        return post_execution(
            app.test_client(), execution_payload(callback_id=callback_id)
        ).status_code

    with ThreadPoolExecutor(max_workers=64) as pool:
        statuses = list(pool.map(send, ids))
    assert statuses == [200] * len(ids)
    assert rows(app, "SELECT count(*), count(DISTINCT callback_id) FROM action_executions")[0] == (
        150,
        150,
    )
    assert rows(app, "SELECT count(*) FROM throttle_queues")[0][0] == 1


def test_database_down_answers_503_with_retry_after(make_app):
    app = make_app(
        database_url="postgresql+psycopg2://postgres@127.0.0.1:1/throttle_test",
        db_connect_timeout_seconds=1,
    )
    response = post_execution(app.test_client(), execution_payload())
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.is_json


def test_database_slower_than_the_deadline_answers_503(make_app):
    app = make_app(admission_deadline_seconds=0.5)
    client = app.test_client()
    post_execution(client, execution_payload(callback_id="warm-up"))
    locker = psycopg2.connect(TEST_DATABASE_URL)
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE action_executions IN ACCESS EXCLUSIVE MODE")
            response = post_execution(client, execution_payload(callback_id="slow"))
        assert response.status_code == 503
        assert "Retry-After" in response.headers
    finally:
        locker.rollback()
        locker.close()
    # HubSpot retries; the retry finds the row (committed once the lock went) or stores it.
    retry = post_execution(client, execution_payload(callback_id="slow"))
    assert retry.status_code == 200
    assert rows(app, "SELECT count(*) FROM action_executions WHERE callback_id = 'slow'")[0][0] == 1


def test_nothing_is_answered_before_the_commit(app, client):
    """Block the commit and check that the request is still waiting, not answered."""
    locker = psycopg2.connect(TEST_DATABASE_URL)
    answered = threading.Event()
    result: dict = {}

    def send():
        result["response"] = post_execution(app.test_client(), execution_payload(callback_id="c"))
        answered.set()

    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE action_executions IN ACCESS EXCLUSIVE MODE")
            thread = threading.Thread(target=send)
            thread.start()
            assert not answered.wait(1.0)
        locker.commit()
        thread.join(10)
    finally:
        locker.close()
    assert result["response"].status_code == 200
    assert rows(app) == [("c", "pending")]


def test_a_row_purged_between_insert_and_read_is_stored_again_before_its_block(
    app, client, monkeypatch
):
    """The narrow race: the INSERT conflicts with a stored row, the purge deletes it before the
    read-back. Nothing is stored for this request then, so the batch writes it again (as it
    does for a queue purged under it) and only then answers BLOCK; if it cannot, a 503."""
    import throttle_app.intake.admission as admission_module

    post_execution(client, execution_payload(callback_id="purged"))
    read_back = admission_module._stored

    def purge_then_read(cur, callback_ids):
        cur.execute("DELETE FROM action_executions WHERE callback_id = ANY(%s)", (callback_ids,))
        return read_back(cur, callback_ids)

    monkeypatch.setattr(admission_module, "_stored", purge_then_read)
    response = post_execution(client, execution_payload(callback_id="purged"))
    assert response.status_code == 200
    assert response.json["outputFields"]["hs_execution_state"] == "BLOCK"
    assert rows(app) == [("purged", "pending")]
    monkeypatch.setattr(admission_module, "QUEUE_GONE_RETRIES", 0)
    response = post_execution(client, execution_payload(callback_id="purged"))
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    monkeypatch.undo()
    assert post_execution(client, execution_payload(callback_id="purged")).status_code == 200
    assert rows(app) == [("purged", "pending")]  # HubSpot's retry stored it again


def test_a_writer_connection_that_failed_its_setup_is_not_kept(app, client, monkeypatch):
    import throttle_app.intake.admission as admission_module
    from throttle_app.services import services_of

    monkeypatch.setattr(admission_module, "_PREPARE_INSERT", "PREPARE broken AS SELECT nope")
    assert post_execution(client, execution_payload(callback_id="a")).status_code == 503
    monkeypatch.undo()
    assert post_execution(client, execution_payload(callback_id="b")).status_code == 200
    with app.app_context():
        service = services_of(app).admission
        assert len(service._connections) == 1  # only the working one
    assert rows(app) == [("b", "pending")]


def writer_backends(app) -> list[int]:
    """The PostgreSQL backend pids of the admission writers' held connections."""
    from throttle_app.services import services_of

    with app.app_context():
        held = services_of(app).admission._connections
        return [conn.driver_connection.info.backend_pid for conn in held]


def test_a_held_connection_the_server_closed_costs_no_503(app, client):
    """PostgreSQL restarted (here: the writer's backend terminated) while a writer sat idle:
    its first batch afterwards goes through on a new connection, not as a 503 however late."""
    assert post_execution(client, execution_payload(callback_id="before")).status_code == 200
    (pid,) = writer_backends(app)
    admin = psycopg2.connect(TEST_DATABASE_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()
    response = post_execution(client, execution_payload(callback_id="after"))
    assert response.status_code == 200, response.json
    assert response.json["outputFields"]["hs_execution_state"] == "BLOCK"
    assert writer_backends(app) != [pid]
    assert rows(app) == [("before", "pending"), ("after", "pending")]


def test_admission_commits_while_redis_is_down(make_app):
    """Invariant 1 needs only PostgreSQL: the wake-up is best effort (the cleaner repairs it)."""
    app = make_app(redis_url="redis://127.0.0.1:1/0", redis_timeout_seconds=0.2)
    response = post_execution(app.test_client(), execution_payload(callback_id="no-redis"))
    assert response.status_code == 200
    assert response.json["outputFields"]["hs_execution_state"] == "BLOCK"
    assert rows(app) == [("no-redis", "pending")]


def test_one_batch_with_the_same_callback_id_three_times(app, client):
    """First delivery, a duplicate in the same batch, and the same id for another queue."""
    from throttle_app.intake.execution_request import parse_execution_request
    from throttle_app.services import services_of

    def request(workflow_id: int):
        body = json.dumps(execution_payload(callback_id="twice", workflow_id=workflow_id))
        return parse_execution_request(body.encode())

    with app.app_context():
        answers = services_of(app).admission._write_batch([request(1), request(1), request(2)])
    assert [a.state for a in answers[:2]] == ["BLOCK", "BLOCK"]
    assert answers[0].created and not answers[1].created
    assert answers[2].conflict
    assert rows(app) == [("twice", "pending")]
