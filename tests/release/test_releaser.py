"""The release engine in one process: windows, outcomes and fencing, against the fake HubSpot."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from datetime import timedelta

import pytest

from tests.conftest import CONFIG_AUTH
from tests.release.engine import run_release
from tests.support.processes import free_port
from tests.support.release_helpers import PORTAL, admit, install_portal, query, queue_id, states
from throttle_app.extensions import db
from throttle_app.release import claims, outcomes
from throttle_app.release.releaser import backoff_seconds
from throttle_app.release.schedule import PAUSE_KEY, STREAK_KEY
from throttle_app.services import services_of


def test_a_window_releases_n_in_one_batch_then_waits_for_the_next(engine_app, fake):
    admit(engine_app, 12, rate=("5", "1", "minutes"))
    queue = queue_id(engine_app)
    report = run_release(engine_app, queue)
    assert (report.claimed, report.completed, report.calls) == (5, 5, 1)
    assert 55 < report.next_run_in <= 60
    assert len(fake.completions()) == 5
    assert [c["callback_id"] for c in fake.completions()] == [f"cb-{n}" for n in range(5)]
    again = run_release(engine_app, queue)  # a duplicate or early job changes nothing
    assert again.claimed == 0 and len(fake.completions()) == 5
    assert states(engine_app) == {"completed": 5, "pending": 7}


def test_next_window_is_counted_from_the_last_send(engine_app, fake):
    admit(engine_app, 3, rate=("5", "30", "seconds"))
    queue = queue_id(engine_app)
    run_release(engine_app, queue)
    (gap,) = query(
        engine_app,
        "SELECT extract(epoch FROM next_release_at - last_sent_at) FROM throttle_queues",
    )[0]
    assert gap == pytest.approx(30, abs=0.01)


def test_leftover_budget_releases_late_arrivals_at_once(engine_app, fake):
    admit(engine_app, 2, prefix="early", rate=("5", "1", "minutes"))
    queue = queue_id(engine_app)
    run_release(engine_app, queue)
    admit(engine_app, 5, prefix="late", rate=("5", "1", "minutes"))
    report = run_release(engine_app, queue)
    assert report.completed == 3  # the window had 5; 2 were used
    assert len(fake.completions()) == 5


def test_config_override_applies_from_the_next_window(engine_app, fake):
    admit(engine_app, 10, rate=("2", "1", "seconds"))
    queue = queue_id(engine_app)
    run_release(engine_app, queue)
    set_override(engine_app, 4, 1, "seconds")
    assert run_release(engine_app, queue).completed == 0  # the current window is spent
    query(  # T has passed
        engine_app,
        "UPDATE throttle_queues SET next_release_at = now(),"
        " last_sent_at = now() - interval '1 second'",
    )
    assert run_release(engine_app, queue).completed == 4


def set_override(app, max_throughput: int, time_period: int, time_unit: str) -> None:
    response = app.test_client().post(
        "/api/config",
        json={
            "portal_id": PORTAL,
            "action_id": "1",
            "max_throughput": max_throughput,
            "time_period": time_period,
            "time_unit": time_unit,
        },
        headers=CONFIG_AUTH,
    )
    assert response.status_code == 200


def test_a_raised_period_waits_the_new_t_after_the_last_send(engine_app, fake):
    admit(engine_app, 10, rate=("2", "1", "seconds"))
    queue = queue_id(engine_app)
    assert run_release(engine_app, queue).completed == 2
    set_override(engine_app, 4, 1, "minutes")
    query(  # the old T (1 s) has passed, the new one (60 s) has not
        engine_app,
        "UPDATE throttle_queues SET next_release_at = now(),"
        " last_sent_at = now() - interval '2 seconds'",
    )
    report = run_release(engine_app, queue)
    assert report.completed == 0
    assert 57 < report.next_run_in <= 58.1
    (gap,) = query(
        engine_app, "SELECT extract(epoch FROM next_release_at - last_sent_at) FROM throttle_queues"
    )[0]
    assert gap == pytest.approx(60, abs=0.01)
    query(  # the new T has passed too
        engine_app,
        "UPDATE throttle_queues SET next_release_at = now(),"
        " last_sent_at = now() - interval '61 seconds'",
    )
    assert run_release(engine_app, queue).completed == 4
    assert len(fake.completions()) == 6


def test_429_gives_the_rows_back_without_an_attempt(engine_app, fake):
    admit(engine_app, 5, rate=("5", "1", "minutes"))
    queue = queue_id(engine_app)
    fake.set_faults(force_429={PORTAL: 1}, retry_after=2)
    report = run_release(engine_app, queue)
    assert report.completed == 0 and report.given_back == 5
    assert report.next_run_in >= 2
    assert query(
        engine_app, "SELECT max(attempts), count(*) FROM action_executions WHERE state = 'pending'"
    )[0] == (0, 5)
    assert query(engine_app, "SELECT window_budget FROM throttle_queues")[0][0] == 5
    assert run_release(engine_app, queue).completed == 0  # the bucket is blocked fleet-wide
    fake.set_faults(force_429={})
    query(engine_app, "SELECT 1")
    time.sleep(2.1)
    assert run_release(engine_app, queue).completed == 5


def test_a_5xx_is_retried_at_once_in_the_same_window(engine_app, fake, redis_conn):
    admit(engine_app, 3, rate=("5", "1", "minutes"))
    queue = queue_id(engine_app)
    fake.set_faults(fail_next=1, fail_next_status=502)
    pauses = []
    report = run_release(engine_app, queue, sleep=pauses.append)
    assert (report.calls, report.prompt_retries, report.completed, report.retried) == (2, 1, 3, 0)
    assert len(pauses) == 1 and 0.05 <= pauses[0] <= 0.1  # 100 ms, jittered 0.5..1
    assert query(engine_app, "SELECT max(attempts) FROM action_executions")[0][0] == 0
    assert redis_conn.exists(PAUSE_KEY % queue) == 0  # no back-off: not an outage
    assert sorted(c["callback_id"] for c in fake.completions()) == ["cb-0", "cb-1", "cb-2"]
    assert query(engine_app, "SELECT window_budget FROM throttle_queues")[0][0] == 2  # one window


def test_a_5xx_past_the_prompt_retries_counts_an_attempt_and_backs_off(engine_app, fake):
    admit(engine_app, 3, rate=("5", "1", "minutes"))
    queue = queue_id(engine_app)
    fake.set_faults(fail_next=3, fail_next_status=503)  # the call and its 2 prompt retries
    report = run_release(engine_app, queue)
    assert (report.calls, report.prompt_retries, report.retried) == (3, 2, 3)
    rows = query(
        engine_app,
        "SELECT attempts, last_failure_reason, next_attempt_at > now() FROM action_executions",
    )
    assert {row[0] for row in rows} == {1}
    assert all("503" in row[1] and row[2] for row in rows)
    assert report.next_run_in >= 1.0  # not before the backoff


def test_a_refused_connection_gives_the_rows_back_and_backs_off(build, fake):
    app = build(release_lead_ms=0, hubspot_api_base=f"http://127.0.0.1:{free_port()}")
    install_portal(app, fake)
    admit(app, 4, rate=("5", "1", "minutes"))
    queue = queue_id(app)
    report = run_release(app, queue)
    assert (report.calls, report.given_back, report.retried) == (3, 4, 0)  # 2 prompt retries
    assert report.next_run_in >= 1.0  # retry_base_seconds 2, jitter 0.5..1
    assert query(
        app,
        "SELECT max(attempts), count(*), bool_and(next_attempt_at IS NULL)"
        " FROM action_executions WHERE state = 'pending'",
    )[0] == (0, 4, True)
    # nothing was sent: the window keeps its budget and no send is recorded
    assert query(app, "SELECT window_budget, last_sent_at FROM throttle_queues")[0] == (5, None)
    again = run_release(app, queue)  # woken early (cleaner, admission): still backing off
    assert again.calls == 0 and again.next_run_in >= 0.5


def test_a_5xx_outage_backs_the_queue_off_longer_each_time(build, fake, redis_conn):
    app = build(release_lead_ms=0, release_batch_size=2)
    install_portal(app, fake)
    admit(app, 8, rate=("8", "1", "minutes"))
    queue = queue_id(app)
    fake.set_faults(fail_next=6, fail_next_status=503)  # every call of two rounds fails
    first = run_release(app, queue)
    assert (first.calls, first.retried) == (3, 2)  # 2 prompt retries; fresh rows: no tight loop
    assert first.next_run_in >= 1.0
    assert run_release(app, queue).calls == 0  # paused
    redis_conn.delete(PAUSE_KEY % queue)  # the pause has run out
    second = run_release(app, queue)
    assert (second.calls, second.retried) == (3, 2)
    assert second.next_run_in >= 2.0  # the second failure in a row: twice the base
    redis_conn.delete(PAUSE_KEY % queue)
    third = run_release(app, queue)  # HubSpot is back: the 4 fresh rows go, the streak ends
    assert third.completed == 4
    assert redis_conn.exists(STREAK_KEY % queue) == 0
    assert query(app, "SELECT max(attempts) FROM action_executions")[0][0] == 1


def test_backoff_grows_with_the_streak_and_is_capped():
    for _ in range(50):
        assert 1.0 <= backoff_seconds(1, 2.0, 300.0) <= 2.0
        assert 4.0 <= backoff_seconds(3, 2.0, 300.0) <= 8.0
        assert 150.0 <= backoff_seconds(40, 2.0, 300.0) <= 300.0


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_missing_scope_403_fails_nothing_and_pauses_the_queue(build, fake):
    app = build(release_lead_ms=0)
    token = install_portal(app, fake, scopes=("oauth",))
    ids = admit(app, 10, rate=("10", "1", "minutes"))
    queue = queue_id(app)
    records, logger = Records(), logging.getLogger("throttle_app.release.sending")
    logger.addHandler(records)
    try:
        report = run_release(app, queue)
    finally:
        logger.removeHandler(records)
    assert (report.calls, report.given_back, report.failed) == (1, 10, 0)
    assert report.next_run_in >= 600
    assert query(
        app, "SELECT max(attempts), count(*) FROM action_executions WHERE state = 'pending'"
    )[0] == (0, 10)
    warning = next(m for m in records.messages if "refused" in m)
    assert str(PORTAL) in warning and "403" in warning and token not in warning
    assert run_release(app, queue).calls == 0  # paused: one call per pause, not per row
    assert fake.stats()["calls"]["complete_batch"] == {"403": 1}
    assert ids


def test_heartbeat_before_every_hubspot_call(engine_app, fake):
    ids = admit(engine_app, 10, rate=("10", "1", "minutes"))
    fake.set_faults(bad_callback_ids=[ids[6]])
    beats = []
    report = run_release(engine_app, queue_id(engine_app), heartbeat=lambda: beats.append(1))
    assert report.calls >= 5  # one claim, halved down to the bad callback
    assert len(beats) >= report.calls + 1


def test_a_bad_callback_is_isolated_and_its_neighbours_complete(engine_app, fake):
    ids = admit(engine_app, 10, rate=("10", "1", "minutes"))
    fake.set_faults(bad_callback_ids=[ids[6]])
    report = run_release(engine_app, queue_id(engine_app))
    assert report.completed == 9 and report.failed == 1
    (reason,) = query(
        engine_app, "SELECT last_failure_reason FROM action_executions WHERE state = 'failed'"
    )[0]
    assert "HubSpot refused" in reason
    assert sorted(c["callback_id"] for c in fake.completions()) == sorted(set(ids) - {ids[6]})


def test_a_partial_answer_fails_only_the_callbacks_it_lists(engine_app, fake):
    """HubSpot's secondary schema: 200 {"status": "PARTIAL", "errors": [...]} (hubspot.md)."""
    ids = admit(engine_app, 5, rate=("5", "1", "minutes"))
    fake.set_faults(partial_callback_ids=[ids[2]])
    report = run_release(engine_app, queue_id(engine_app))
    assert (report.calls, report.completed, report.failed) == (1, 4, 1)
    failed = query(
        engine_app,
        "SELECT callback_id, last_failure_reason FROM action_executions WHERE state = 'failed'",
    )
    assert [row[0] for row in failed] == [ids[2]]
    assert "callback is not open" in failed[0][1]  # HubSpot's reason is kept
    assert sorted(c["callback_id"] for c in fake.completions()) == sorted(set(ids) - {ids[2]})


def test_concurrent_claims_never_exceed_the_window(engine_app, fake):
    """Invariant 3 with two jobs at once (a stale job replaced while it still runs)."""
    admit(engine_app, 30, rate=("10", "1", "minutes"))
    queue = queue_id(engine_app)
    start = threading.Barrier(4)
    claimed: list[int] = []

    def claim() -> None:
        with engine_app.app_context():
            start.wait(10)
            result = claims.claim_next(db.session, queue, 100, 60, timedelta(0))
            claimed.append(0 if isinstance(result, claims.Idle) else len(result.rows))
            db.session.remove()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(claimed) == 4
    assert sum(claimed) == 10  # one window's N, however many jobs claimed at once
    assert states(engine_app) == {"claimed": 10, "pending": 20}


def test_attempt_limit_completes_with_fail_continue(build, fake):
    app = build(
        max_attempts=2,
        retry_base_seconds=0.01,
        retry_max_seconds=0.01,
        transient_retries=0,  # every failed call is a round
    )
    install_portal(app, fake)
    admit(app, 1, rate=("5", "1", "seconds"))
    queue = queue_id(app)
    fake.set_faults(fail_next=2)
    for _ in range(2):
        run_release(app, queue)
        time.sleep(0.05)
        query(app, "UPDATE throttle_queues SET next_release_at = now(), window_budget = 5")
    assert query(app, "SELECT outcome, attempts FROM action_executions")[0] == ("FAIL_CONTINUE", 2)
    run_release(app, queue)
    assert states(app) == {"failed": 1}
    assert [c["state"] for c in fake.completions()] == ["FAIL_CONTINUE"]
    replay = admit(app, 1, rate=("5", "1", "seconds"))  # HubSpot redelivers: answered as stored
    assert replay == ["cb-0"]


def test_401_refreshes_once_and_resends(engine_app, fake):
    admit(engine_app, 2, rate=("5", "1", "minutes"))
    with engine_app.app_context():
        token = services_of(engine_app).tokens.access_token_for(PORTAL)
    fake.expire_access_token(token)
    report = run_release(engine_app, queue_id(engine_app))
    assert report.completed == 2
    assert fake.stats()["token_calls"].get("refresh_token") == 1


def test_a_fresh_token_refused_too_fails_nothing_and_backs_off(engine_app, fake, monkeypatch):
    store = services_of(engine_app).tokens
    admit(engine_app, 3, rate=("5", "1", "minutes"))
    with engine_app.app_context():
        fake.expire_access_token(store.access_token_for(PORTAL))
    refresh = store.refresh_after_unauthorized

    def refresh_then_refused(portal_id: int, rejected: str) -> str:
        token = refresh(portal_id, rejected)
        fake.expire_access_token(token)  # HubSpot refuses the new token as well
        return token

    monkeypatch.setattr(store, "refresh_after_unauthorized", refresh_then_refused)
    report = run_release(engine_app, queue_id(engine_app))
    assert (report.calls, report.given_back, report.failed) == (2, 3, 0)
    assert report.next_run_in > 0
    assert query(engine_app, "SELECT max(attempts), count(*) FROM action_executions")[0] == (0, 3)
    assert states(engine_app) == {"pending": 3}


def test_disconnected_portal_is_not_called(engine_app, fake):
    admit(engine_app, 2, rate=("5", "1", "minutes"))
    with engine_app.app_context():
        from throttle_app.oauth import tokens as oauth_tokens

        oauth_tokens.mark_disconnected(PORTAL, "test")
    report = run_release(engine_app, queue_id(engine_app))
    assert report.calls == 0 and report.next_run_in is None
    assert fake.stats()["requests"] == 0
    assert states(engine_app) == {"pending": 2}


def test_paused_queue_releases_nothing(engine_app, fake):
    admit(engine_app, 2, rate=("5", "1", "minutes"))
    query(engine_app, "UPDATE throttle_queues SET paused = true")
    report = run_release(engine_app, queue_id(engine_app))
    assert report.claimed == 0 and report.next_run_in is None


def test_a_worker_that_lost_its_lease_cannot_mark(engine_app, fake):
    admit(engine_app, 3, rate=("5", "1", "minutes"))
    queue = queue_id(engine_app)
    with engine_app.app_context():
        claim = claims.claim_next(db.session, queue, 100, 60, timedelta(0))
        db.session.execute(db.text("UPDATE action_executions SET lease_expires_at = now()"))
        db.session.commit()
        assert outcomes.mark_completed(db.session, claim, claim.rows, {}) == 0
        db.session.remove()
    assert states(engine_app) == {"claimed": 3}


def test_another_owner_cannot_mark_rows_under_a_live_lease(engine_app, fake):
    admit(engine_app, 3, rate=("5", "1", "minutes"))
    queue = queue_id(engine_app)
    with engine_app.app_context():
        claim = claims.claim_next(db.session, queue, 100, 60, timedelta(0))
        impostor = dataclasses.replace(claim, owner=uuid.uuid4())  # lease still live
        assert outcomes.mark_completed(db.session, impostor, claim.rows, {}) == 0
        assert outcomes.give_back(db.session, impostor, claim.rows) == 0
        db.session.remove()
    assert states(engine_app) == {"claimed": 3}


def test_draining_ignores_the_rate(engine_app, fake):
    admit(engine_app, 12, rate=("2", "1", "hours"))
    query(engine_app, "UPDATE throttle_queues SET draining = true")
    report = run_release(engine_app, queue_id(engine_app))
    assert report.completed == 12
    assert query(engine_app, "SELECT draining FROM throttle_queues")[0][0] is False


def test_a_failed_call_counts_as_a_send_even_when_its_rows_go_back(engine_app, fake):
    """A 502 may have completed callbacks: the next window counts from it, also when the prompt
    retry never happens (the worker stopped during its pause) and the rows are given back."""
    admit(engine_app, 3, rate=("5", "1", "minutes"))
    fake.set_faults(fail_next=1, fail_next_status=502)
    stop = threading.Event()
    report = run_release(
        engine_app, queue_id(engine_app), sleep=lambda seconds: stop.set(), stopping=stop.is_set
    )
    assert (report.calls, report.given_back, report.retried) == (1, 3, 0)
    (gap,) = query(
        engine_app,
        "SELECT extract(epoch FROM next_release_at - last_sent_at) FROM throttle_queues",
    )[0]
    assert gap == pytest.approx(60, abs=0.01)
