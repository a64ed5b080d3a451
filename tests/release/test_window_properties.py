"""The window arithmetic as a property: for generated rates and generated sequences of claims,
sends, answers, timeouts, dead workers, cleaner passes and waits, the real claims functions on
the real database never let more than N sends of a queue start in any span of T.

Time is controlled without waiting: advancing the clock by s seconds moves every stored time
of the queue (window start, next release, last send, leases, retry times) s seconds into the
past, which is the same, to every statement that compares them with clock_timestamp(), as s
seconds passing. The test keeps the matching virtual clock (real time plus every advance) and
times each send on it.

The workers are modelled on releaser.py: a claim's lease counts from before the claim, the send
waits for the claim's send_delay, and a send starts only when the call budget (bucket wait,
timeouts, margin) still fits in the lease; otherwise the rows are given back. A call's answer
arrives when the test says, or as a timeout once the call's connect and read timeouts have
passed; a worker may also die after it sent, leaving its rows claimed for the cleaner. Every
marking gives the call's start, as the releaser does, so windows are anchored on send starts.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import timedelta

from hypothesis import HealthCheck, example, given, settings, target
from hypothesis import strategies as st
from sqlalchemy import text

from tests.faults.invariants import busiest_span
from tests.support.release_helpers import backlog
from throttle_app.extensions import db
from throttle_app.release import claims, cleaner, outcomes
from throttle_app.release.claims import Claim, Idle
from throttle_app.release.schedule import ReleaseSchedule

CONNECT, READ, INLINE_WAIT, MARGIN = 1.0, 3.0, 2.0, 1.0
CALL_BUDGET = INLINE_WAIT + CONNECT + READ + MARGIN  # Settings.call_budget_seconds
TIMEOUT = CONNECT + READ
_names = itertools.count()

_SHIFT = [
    text(
        "UPDATE throttle_queues SET"
        " window_opens_at = window_opens_at - make_interval(secs => :s),"
        " next_release_at = next_release_at - make_interval(secs => :s),"
        " last_sent_at = last_sent_at - make_interval(secs => :s) WHERE id = :q"
    ),
    text(
        "UPDATE action_executions SET"
        " lease_expires_at = lease_expires_at - make_interval(secs => :s),"
        " next_attempt_at = next_attempt_at - make_interval(secs => :s),"
        " hold_expires_at = hold_expires_at - make_interval(secs => :s) WHERE queue_id = :q"
    ),
]


@dataclass
class Flight:
    claim: Claim
    started: float  # virtual time the send started


@dataclass
class Model:
    """One queue, its workers and a virtual clock."""

    queue_id: int
    period: int
    batch: int
    lease: int
    lead: timedelta
    schedule: ReleaseSchedule
    offset: float = 0.0
    sends: list[float] = field(default_factory=list)
    flights: list[Flight] = field(default_factory=list)

    def now(self) -> float:
        return time.time() + self.offset

    def _shift(self, seconds: float) -> None:
        if seconds <= 0:
            return
        for statement in _SHIFT:
            db.session.execute(statement, {"s": seconds, "q": self.queue_id})
        db.session.commit()
        self.offset += seconds

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass; a call whose timeouts run out meanwhile times out then."""
        target = self.now() + seconds
        while due := [f for f in self.flights if f.started + TIMEOUT <= target]:
            flight = min(due, key=lambda f: f.started)
            self._shift(flight.started + TIMEOUT - self.now())
            self.flights.remove(flight)
            self._retry(flight, "timeout")
        self._shift(target - self.now())

    def claim(self) -> None:
        """A release job's step: claim, wait for the window, send if the lease allows."""
        started = self.now()
        claim = claims.claim_next(db.session, self.queue_id, self.batch, self.lease, self.lead)
        if isinstance(claim, Idle):
            return
        self.advance(claim.send_delay)
        if self.now() + CALL_BUDGET > started + claim.lease_seconds:
            outcomes.give_back(db.session, claim, claim.rows)
            return
        self.sends.extend(self.now() for _ in claim.rows)
        self.flights.append(Flight(claim, self.now()))

    def answer(self, index: int, outcome: str) -> None:
        """The answer to one call in flight (or its worker dies and never marks it)."""
        if not self.flights:
            return
        flight = self.flights.pop(index % len(self.flights))
        if outcome == "completed":
            outcomes.mark_completed(
                db.session, flight.claim, flight.claim.rows, {}, self._monotonic(flight.started)
            )
        elif outcome == "failed":
            self._retry(flight, "HTTP 502")
        # "died": the rows stay claimed until their lease ends and the cleaner takes them back

    def clean(self) -> None:
        cleaner.clean(db.session, self.schedule, self.lead)

    def _monotonic(self, virtual: float) -> float:
        """The time.monotonic() reading that lies as far back as the virtual time `virtual`."""
        return time.monotonic() - (self.now() - virtual)

    def _retry(self, flight: Flight, reason: str) -> None:
        claim, started = flight.claim, self._monotonic(flight.started)
        outcomes.mark_retry(db.session, claim, claim.rows, reason, 20, 2.0, 300.0, started)


claim = st.tuples(st.just("claim"), st.none())
steps = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(0, 1500)),  # thousandths of T
        claim,
        claim,  # twice: claims back to back and claims late in a window are the sharp cases
        st.tuples(
            st.just("answer"),
            st.tuples(st.integers(0, 3), st.sampled_from(["completed", "failed", "died"])),
        ),
        st.tuples(st.just("clean"), st.none()),
    ),
    min_size=1,
    max_size=30,
)


@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    n=st.integers(1, 12),
    period=st.integers(1, 8),
    batch=st.integers(1, 15),
    lease=st.integers(int(CALL_BUDGET) + 1, 30),
    lead_ms=st.sampled_from([0, 150, 1000]),
    backlog_size=st.integers(1, 60),
    program=steps,
)
# Paths worth trying every run: a window's budget spent late in the window by a second claim
# (the next window must count from that send), the same with both calls answered (anchored on
# the window's first send start, the next window's two sends would join the late one in one
# span of T), and a dead worker's claim (from its lease end).
@example(
    n=2, period=1, batch=1, lease=8, lead_ms=0, backlog_size=10,
    program=[("claim", None), ("advance", 600), ("claim", None), ("advance", 500),
             ("claim", None), ("claim", None)],
)  # fmt: skip
@example(
    n=2, period=1, batch=1, lease=8, lead_ms=0, backlog_size=10,
    program=[("claim", None), ("advance", 900), ("claim", None), ("answer", (0, "completed")),
             ("answer", (0, "completed")), ("advance", 100), ("claim", None), ("claim", None),
             ("answer", (0, "completed")), ("answer", (0, "completed")), ("claim", None)],
)  # fmt: skip
@example(
    n=3, period=2, batch=3, lease=8, lead_ms=150, backlog_size=10,
    program=[("claim", None), ("answer", (0, "died")), ("advance", 4200), ("clean", None),
             ("claim", None)],
)  # fmt: skip
def test_no_span_of_t_holds_more_than_n_sends(
    app, redis_conn, n, period, batch, lease, lead_ms, backlog_size, program
):
    with app.app_context():
        queue_id = backlog(app, backlog_size, n, period, name=f"p{next(_names)}")
        model = Model(
            queue_id,
            period,
            batch,
            lease,
            timedelta(milliseconds=lead_ms),
            ReleaseSchedule(redis_conn),
        )
        for action, argument in program:
            if action == "advance":
                model.advance(argument * period / 1000)
            elif action == "claim":
                model.claim()
            elif action == "answer":
                model.answer(*argument)
            else:
                model.clean()
        db.session.remove()
    busiest, at = busiest_span(model.sends, period)
    target(busiest / n, label="busiest span of T, as a share of N")  # search towards the bound
    assert busiest <= n, f"{busiest} sends started within {period}s (from {at:.3f}), N={n}"
