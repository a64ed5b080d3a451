"""Short leases renewed by the job that holds them (invariant 5), the watch that lets the clock
take a dead job's queue over, and a stopping worker that gives its claim back."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest

from tests.release.engine import run_release
from tests.support.release_helpers import PORTAL, admit, install_portal, query, queue_id, states
from throttle_app.extensions import db
from throttle_app.release import claims, leases
from throttle_app.release.schedule import WATCH_KEY
from throttle_app.services import services_of


def claim_all(app, queue: int, lease: float = 60):
    with app.app_context():
        claim = claims.claim_next(db.session, queue, 100, lease, timedelta(0))
        db.session.remove()
    assert isinstance(claim, claims.Claim)
    return claim


def renew(app, claim, seconds: float) -> set[int]:
    with app.app_context():
        try:
            return leases.renew(db.session, claim, seconds)
        finally:
            db.session.remove()


def test_a_renewal_moves_the_lease_and_the_next_window_with_it(engine_app):
    admit(engine_app, 3, rate=("3", "1", "seconds"))
    claim = claim_all(engine_app, queue_id(engine_app), lease=5)
    assert renew(engine_app, claim, 30) == {row.id for row in claim.rows}
    (left, after_lease) = query(
        engine_app,
        "SELECT extract(epoch FROM max(e.lease_expires_at) - now()),"
        " extract(epoch FROM q.next_release_at - max(e.lease_expires_at))"
        " FROM action_executions e JOIN throttle_queues q ON q.id = e.queue_id GROUP BY q.id",
    )[0]
    assert 29 < left <= 30
    assert after_lease == pytest.approx(1, abs=0.01)  # T after the renewed lease end


def test_a_renewal_is_fenced_on_owner_and_live_lease(engine_app):
    admit(engine_app, 3, rate=("3", "1", "minutes"))
    claim = claim_all(engine_app, queue_id(engine_app))
    impostor = dataclasses.replace(claim, owner=uuid.uuid4())
    assert renew(engine_app, impostor, 30) == set()
    query(engine_app, "UPDATE action_executions SET lease_expires_at = now()")
    assert renew(engine_app, claim, 30) == set()  # ended: the rows may be someone else's
    assert query(engine_app, "SELECT bool_and(lease_expires_at <= now()) FROM action_executions")[
        0
    ] == (True,)


def test_a_renewal_after_the_next_window_opened_is_refused(engine_app):
    admit(engine_app, 3, rate=("3", "1", "minutes"))
    claim = claim_all(engine_app, queue_id(engine_app))
    query(engine_app, "UPDATE throttle_queues SET window_opens_at = now() + interval '1 minute'")
    assert renew(engine_app, claim, 30) == set()
    (left,) = query(
        engine_app,
        "SELECT extract(epoch FROM max(lease_expires_at) - now()) FROM action_executions",
    )[0]
    assert 58 < left <= 60  # rolled back: the old lease stands


def test_a_lease_too_short_for_the_bucket_wait_is_renewed_before_the_call(build, fake):
    app = build(
        release_lead_ms=0,
        lease_seconds=3,  # under the call budget: 2 + 0.5 + 0.5 + 1 s
        http_connect_timeout_seconds=0.5,
        http_read_timeout_seconds=0.5,
        max_inline_wait_seconds=2.0,
    )
    install_portal(app, fake)
    admit(app, 3, rate=("5", "1", "minutes"))
    with app.app_context():
        services_of(app).hubspot._bucket.block(PORTAL, 1.9)  # the next token comes in 1.9 s
    leases_at_call = []

    def heartbeat() -> None:  # just before the call
        leases_at_call.append(
            query(
                app,
                "SELECT min(extract(epoch FROM lease_expires_at - clock_timestamp()))"
                " FROM action_executions WHERE state = 'claimed'",
            )[0][0]
        )

    report = run_release(app, queue_id(app), heartbeat=heartbeat)
    assert (report.renewals, report.completed) == (1, 3)
    assert leases_at_call[0] is None  # the token lookup, before the claim
    assert len(leases_at_call) == 2 and leases_at_call[1] >= 4.0  # covers wait, call, margin


def test_no_send_once_the_lease_could_have_been_taken_over(build, fake):
    app = build(
        release_lead_ms=0,
        lease_seconds=3,
        http_connect_timeout_seconds=0.5,
        http_read_timeout_seconds=0.5,
        max_inline_wait_seconds=2.0,
    )
    install_portal(app, fake)
    admit(app, 3, rate=("5", "1", "minutes"))

    def lease_ends() -> bool:  # as if the step before the call had outlasted the lease
        query(app, "UPDATE action_executions SET lease_expires_at = now() WHERE state = 'claimed'")
        return False

    report = run_release(app, queue_id(app), stopping=lease_ends)
    assert report.calls == 0 and report.stopped == "the claim's lease ran out before the call"
    assert fake.stats()["requests"] == 0
    assert states(app) == {"claimed": 3}  # the cleaner returns them, counting the lease end


def test_a_run_watches_its_queue_while_it_holds_a_claim(engine_app, redis_conn):
    admit(engine_app, 3, rate=("3", "1", "minutes"))
    queue = queue_id(engine_app)
    watched = []

    def heartbeat() -> None:
        score = redis_conn.zscore(WATCH_KEY, queue)
        seconds, micros = redis_conn.time()
        watched.append(None if score is None else score / 1000 - (seconds + micros / 1e6))

    lease = services_of(engine_app).settings.lease_seconds
    report = run_release(engine_app, queue, heartbeat=heartbeat)
    assert report.completed == 3
    assert watched[0] is None  # the token lookup comes before any claim
    assert watched[1] is not None and lease - 1 < watched[1] <= lease + 0.01
    assert redis_conn.zscore(WATCH_KEY, queue) is None  # the run ended: nothing to take over


def test_a_stopping_worker_gives_its_claim_back_at_the_next_step(engine_app, fake, redis_conn):
    """SIGTERM (jobs.request_stop): the call in flight finishes, nothing more is sent, the rows
    not sent go back at once with their budget, and the queue is scheduled for another worker."""
    ids = admit(engine_app, 10, rate=("10", "1", "minutes"))
    fake.set_faults(bad_callback_ids=[ids[3]])  # a 400: the claim would be halved, call by call
    report = run_release(
        engine_app,
        queue_id(engine_app),
        stopping=lambda: bool(fake.stats()["calls"]),  # SIGTERM during the first call
    )
    assert (report.calls, report.given_back, report.completed) == (1, 10, 0)
    assert report.stopped == "the worker is stopping"
    assert states(engine_app) == {"pending": 10}
    assert query(
        engine_app,
        "SELECT max(attempts), max(window_budget) FROM action_executions"
        " JOIN throttle_queues q ON q.id = queue_id",
    )[0] == (0, 10)
    assert report.next_run_in == 0.0  # another worker takes the queue over at once
    assert redis_conn.zscore(WATCH_KEY, queue_id(engine_app)) is None


def test_a_stopping_worker_claims_nothing(engine_app, fake):
    admit(engine_app, 3, rate=("3", "1", "minutes"))
    report = run_release(engine_app, queue_id(engine_app), stopping=lambda: True)
    assert (report.claimed, report.calls, report.stopped) == (0, 0, "the worker is stopping")
    assert report.next_run_in == 0.0
