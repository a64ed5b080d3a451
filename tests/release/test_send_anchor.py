"""Windows are anchored on send starts (claims.py): the next window opens T after the window's
send started, not after HubSpot answered, and a send still in flight holds it back until its
answer is marked. Against the fake HubSpot with its answer latency; the times compared are the
fake's own (when it received each call, before it waits)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from tests.release.engine import run_release
from tests.release.window_checks import RECEIPT_JITTER, wait_until
from tests.support.release_helpers import admit, install_portal, query, queue_id
from throttle_app.extensions import db
from throttle_app.release import claims, outcomes


def call_times(fake) -> list[float]:
    """When the fake received each callback call, in order."""
    return sorted({c["time"] for c in fake.completions()})


def test_the_next_window_opens_t_after_the_send_started_not_after_the_answer(engine_app, fake):
    fake.set_faults(callback_latency=0.5)
    admit(engine_app, 10, rate=("5", "1", "seconds"))
    queue = queue_id(engine_app)
    first = run_release(engine_app, queue, sleep=time.sleep)
    assert (first.completed, first.calls) == (5, 1)
    received = call_times(fake)[0]
    last_sent, gap = query(
        engine_app,
        "SELECT extract(epoch FROM last_sent_at), extract(epoch FROM next_release_at -"
        " last_sent_at) FROM throttle_queues",
    )[0]
    assert float(last_sent) == pytest.approx(received, abs=0.05)  # the start, not the answer
    assert float(gap) == pytest.approx(1.0, abs=0.001)
    assert first.next_run_in < 0.6  # what the 0.5 s answer left of T
    time.sleep(first.next_run_in)
    second = run_release(engine_app, queue, sleep=time.sleep)
    assert (second.completed, second.calls) == (5, 1)
    window = call_times(fake)[1] - received
    assert 1.0 - RECEIPT_JITTER <= window < 1.25  # counted from the answer: 1.5 s and more


def test_a_send_in_flight_past_t_holds_the_next_window_until_t_after_it_ends(build, fake):
    """HubSpot may have received a send that outlasted T as late as its answer: the next window
    waits while it is in flight, then counts T from its end (claims.py)."""
    app = build(release_lead_ms=0, max_inline_wait_seconds=0.5, http_read_timeout_seconds=3.0)
    install_portal(app, fake)
    fake.set_faults(callback_latency=1.6)  # longer than T
    admit(app, 10, rate=("5", "1", "seconds"))
    queue = queue_id(app)
    slow = threading.Thread(target=run_release, args=(app, queue), kwargs={"sleep": time.sleep})
    slow.start()
    try:
        started = wait_until(lambda: call_times(fake), 10)[0]
        time.sleep(max(0.0, started + 1.2 - time.time()))  # T has passed, the call is in flight
        early = run_release(app, queue)  # a duplicate or early job
        assert early.claimed == 0
        assert len(fake.completions()) == 5
    finally:
        slow.join(15)
    for _ in range(3):  # the next window's job, when it is due
        if len(fake.completions()) >= 10:
            break
        time.sleep(run_release(app, queue, sleep=time.sleep).next_run_in or 0.0)
    first, second = call_times(fake)
    assert second - first >= 1.6 + 1.0 - RECEIPT_JITTER  # T after the first call was answered
    assert second - first < 3.3


def test_the_marking_records_the_start_it_is_given(engine_app, fake):
    """However long the call and its marking take, the stored send is the call's start."""
    admit(engine_app, 3, rate=("5", "30", "seconds"))
    queue = queue_id(engine_app)
    with engine_app.app_context():
        claim = claims.claim_next(db.session, queue, 100, 60, timedelta(0))
        started = db.session.execute(db.text("SELECT clock_timestamp()")).scalar()
        started_at = time.monotonic()
        db.session.commit()
        time.sleep(0.5)  # the call, then a slow marking
        assert outcomes.mark_completed(db.session, claim, claim.rows, {}, started_at) == 3
        db.session.remove()
    (last_sent, gap) = query(
        engine_app,
        "SELECT last_sent_at, extract(epoch FROM next_release_at - last_sent_at)"
        " FROM throttle_queues",
    )[0]
    after_start = (last_sent - started).total_seconds()
    assert 0 <= after_start < 0.1  # never before the start, and not at the answer
    assert float(gap) == pytest.approx(30, abs=0.01)
