"""Operator CLI: `flask throttle queues|pause|resume|drain` against real PostgreSQL and Redis."""

from __future__ import annotations

import json

import pytest

from tests.support.release_helpers import admit, query, queue_id
from throttle_app.release.schedule import WAKEUPS_KEY


def test_queues_lists_backlog_rate_and_state(app):
    admit(app, 3, rate=("5", "1", "minutes"))
    result = app.test_cli_runner().invoke(args=["throttle", "queues", "--json"])
    assert result.exit_code == 0, result.output
    (status,) = [json.loads(line) for line in result.output.splitlines()]
    assert status["pending"] == 3 and status["rate"] == "5 per 60s"
    assert status["paused"] is False and status["portal_connected"] is False
    assert status["oldest_hold_expiry"] is not None
    table = app.test_cli_runner().invoke(args=["throttle", "queues"])
    assert "50467010:1:1" in table.output and "DISCONNECTED" in table.output


def test_pause_resume_and_drain(app, redis_conn):
    admit(app, 2)
    queue = queue_id(app)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["throttle", "pause", str(queue)]).exit_code == 0
    assert query(app, "SELECT paused FROM throttle_queues")[0][0] is True
    redis_conn.delete(WAKEUPS_KEY)
    assert runner.invoke(args=["throttle", "resume", "50467010:1:1"]).exit_code == 0
    assert query(app, "SELECT paused FROM throttle_queues")[0][0] is False
    assert redis_conn.zscore(WAKEUPS_KEY, str(queue)) is not None  # resume wakes the queue
    assert runner.invoke(args=["throttle", "drain", str(queue)]).exit_code == 0
    assert query(app, "SELECT draining FROM throttle_queues")[0][0] is True


@pytest.mark.parametrize("ref", ["999", "²", "9" * 30, "1:2:three"])
def test_unknown_queue_is_a_clear_error(app, ref):
    result = app.test_cli_runner().invoke(args=["throttle", "pause", ref])
    assert result.exit_code != 0
    assert f"no queue {ref!r}" in result.output


def test_queues_show_each_policy_in_one_line_and_the_shared_name(app):
    from tests.support.hubspot_requests import execution_payload, post_execution

    client = app.test_client()
    payload = execution_payload(callback_id="cb-spread", max_throughput="10", period="seconds")
    payload["inputFields"].update(
        mode="spread",
        releaseDays="MON;TUE;WED;THU;FRI",
        windowStart="09:00",
        windowEnd="17:00",
        timeZone="America/New_York",
    )
    assert post_execution(client, payload).status_code == 200
    shared = execution_payload(callback_id="cb-shared", max_throughput="5", period="minutes")
    shared["inputFields"].update(queueName="Sales EU", startAt="2027-03-14T09:00:00+01:00")
    assert post_execution(client, shared).status_code == 200
    table = app.test_cli_runner().invoke(args=["throttle", "queues"]).output
    assert "10 per 1 s, spread, MON-FRI 09:00-17:00 America/New_York" in table
    assert "50467010:name:Sales EU" in table
    assert "5 per 1 min, from 2027-03-14 08:00 UTC" in table
    lines = app.test_cli_runner().invoke(args=["throttle", "queues", "--json"]).output
    statuses = {s["queue_key"]: s for s in map(json.loads, lines.splitlines())}
    named = statuses["50467010:name:Sales EU"]
    assert named["queue_name"] == "Sales EU"
    assert named["release_policy"]["startAt"] == "2027-03-14T08:00:00+00:00"
    spread = statuses["50467010:1791092093:1"]["release_policy"]
    assert spread["releaseDays"] == "MON,TUE,WED,THU,FRI" and spread["windowEnd"] == "17:00"
