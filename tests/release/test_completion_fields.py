"""Every completion carries the action's output fields: the outcome and the seconds waited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.release.engine import run_release
from tests.support.release_helpers import admit, query, queue_id
from throttle_app.release.claims import ClaimedRow
from throttle_app.release.completion_fields import output_fields


def test_a_released_record_reports_released_and_its_wait(engine_app, fake):
    admit(engine_app, 2, rate=("5", "1", "minutes"))
    query(
        engine_app,
        "UPDATE action_executions SET created_at = created_at - interval '90 seconds'"
        " WHERE callback_id = 'cb-0'",
    )
    run_release(engine_app, queue_id(engine_app))
    fields = {c["callback_id"]: c["output_fields"] for c in fake.completions()}
    assert fields["cb-0"]["hs_execution_state"] == "SUCCESS"
    assert fields["cb-0"]["throttle_outcome"] == "released"
    assert 90 <= int(fields["cb-0"]["throttle_waited_seconds"]) <= 92
    assert fields["cb-1"]["throttle_outcome"] == "released"
    assert 0 <= int(fields["cb-1"]["throttle_waited_seconds"]) <= 2
    # HubSpot takes output values as strings only (the fake refuses anything else)
    assert all(isinstance(v, str) for f in fields.values() for v in f.values())


def test_a_record_past_its_attempt_limit_reports_failed(engine_app, fake):
    admit(engine_app, 1, rate=("5", "1", "minutes"))
    query(engine_app, "UPDATE action_executions SET outcome = 'FAIL_CONTINUE', attempts = 20")
    run_release(engine_app, queue_id(engine_app))
    (completion,) = fake.completions()
    assert completion["output_fields"]["hs_execution_state"] == "FAIL_CONTINUE"
    assert completion["output_fields"]["throttle_outcome"] == "failed"
    assert query(engine_app, "SELECT state FROM action_executions")[0][0] == "failed"


def test_the_wait_is_whole_seconds_and_never_negative():
    created = datetime(2027, 3, 14, 12, 0, 0, tzinfo=UTC)
    row = ClaimedRow(1, "cb", "SUCCESS", created)
    assert output_fields(row, "SUCCESS", created + timedelta(seconds=59.9)) == {
        "hs_execution_state": "SUCCESS",
        "throttle_outcome": "released",
        "throttle_waited_seconds": "59",
    }
    # a send clock slightly behind the database's reads 0, not a negative wait
    early = output_fields(row, "SUCCESS", created - timedelta(seconds=1))
    assert early["throttle_waited_seconds"] == "0"
