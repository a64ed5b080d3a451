"""One run of a queue's release job: claim what the window allows, complete it at HubSpot, record
the outcome, and ask for the next run. Every decision about budget lives in claims.py, every
row update in outcomes.py; every HubSpot answer is typed by hubspot/callbacks.py; this module
only connects them. It is one state machine (a run, its batches and their failures), so it
stays one module.

What each failure costs, and why:
- 429 or an empty bucket: the rows go back without an attempt (being limited is not a failure).
- The connection could not be made: the request never reached HubSpot, so the rows go back
  without an attempt, and the queue backs off like after a 5xx.
- 5xx, 408 or a read timeout: HubSpot may have acted, so each row counts an attempt (and backs
  off on its own); the queue stops and backs off, exponentially with jitter over its consecutive
  failures (THROTTLE_RETRY_BASE_SECONDS doubling up to THROTTLE_RETRY_MAX_SECONDS), so an outage
  neither burns the window's budget in a tight loop nor pushes rows to their attempt limit.
- 400, 404, 409, 410, 413, 422 on a batch can be about one callback: the batch is halved until
  the refused callbacks stand alone and fail; their neighbours complete.
- A 401 refreshes the token once; a 401 for the fresh token too gives the rows back and backs the
  queue off like an outage (the app's access is broken, not the callbacks).
- Any other 4xx (403 missing scope, 405, 415, ...) is about the app, the portal or the request:
  failing callbacks one by one for it would fail the whole backlog and push our error rate past
  HubSpot's 5%. The rows go back without an attempt, the queue backs off for
  THROTTLE_REFUSED_BACKOFF_SECONDS, and a warning names the portal and the status.
A queue that backs off (schedule.PAUSE_KEY in Redis; not the operator's pause in
throttle_queues.paused, which a resume clears) only reschedules early wake-ups (cleaner,
admissions) to the back-off's end.

Time: a claim's lease counts from before the claim, and a call starts only when the bucket wait,
the HTTP timeouts and a margin fit in what is left of it (Settings.call_budget_seconds), checked
again after the bucket gave its token; so no send lands after its lease ended. The job
heartbeats before every HubSpot call and token refresh (the release clock replaces jobs whose
heartbeat is older than Settings.stale_job_seconds).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from throttle_app.config import CALL_MARGIN_SECONDS, Settings
from throttle_app.hubspot.callbacks import (
    BucketWait,
    HubSpotClient,
    NotSent,
    RateLimited,
    Refused,
    Rejected,
    TooLate,
    Transient,
    Unauthorized,
)
from throttle_app.release import claims, outcomes
from throttle_app.release.claims import Claim, ClaimedRow, Idle
from throttle_app.release.schedule import ReleaseSchedule

log = logging.getLogger(__name__)


class PortalUnavailable(Exception):
    """No access token for the portal. `retry_in` None: it is disconnected, hold its executions
    until it reconnects; otherwise a transient problem, look again after `retry_in` seconds."""

    def __init__(self, message: str, retry_in: float | None = None) -> None:
        super().__init__(message)
        self.retry_in = retry_in


class TokenSource(Protocol):
    def access_token_for(self, portal_id: int) -> str: ...

    def refresh_after_unauthorized(self, portal_id: int, rejected_token: str) -> str: ...


@dataclass
class ReleaseReport:
    claimed: int = 0
    completed: int = 0
    calls: int = 0
    retried: int = 0
    failed: int = 0
    given_back: int = 0
    stopped: str | None = None
    next_run_in: float | None = None


@dataclass(frozen=True)
class _Stop:
    reason: str
    wait: float = 0.0  # seconds before the queue may be looked at again
    wake: bool = True  # False: nothing will change until something else wakes the queue
    pause: bool = False  # True: early wake-ups (cleaner, admissions) wait for `wait` too


def _unavailable(exc: PortalUnavailable) -> _Stop:
    if exc.retry_in is None:
        return _Stop(f"portal unavailable: {exc}", wake=False)
    return _Stop(f"no token yet: {exc}", wait=exc.retry_in)


def backoff_seconds(streak: int, base: float, cap: float) -> float:
    """The queue's pause after `streak` failed calls in a row: the per-row retry backoff of
    outcomes.mark_retry (base doubling up to cap, times 0.5..1 jitter), over the streak."""
    return min(cap, base * 2 ** min(streak - 1, 30)) * (0.5 + random.random() / 2)


class Releaser:
    """Releases one queue for up to `release_job_seconds`, then hands over to a fresh job."""

    def __init__(
        self,
        settings: Settings,
        session: Session,
        client: HubSpotClient,
        schedule: ReleaseSchedule,
        tokens: TokenSource,
        sleep: Callable[[float], None] = time.sleep,
        heartbeat: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.session = session
        self.client = client
        self.schedule = schedule
        self.tokens = tokens
        self.sleep = sleep
        self.heartbeat = heartbeat
        self.lead = timedelta(milliseconds=settings.release_lead_ms)
        # A call may only start when it surely ends (bucket wait, timeouts) before its lease.
        self.call_budget = settings.call_budget_seconds

    def run(self, queue_id: int) -> ReleaseReport:
        report = ReleaseReport()
        # One token lookup per run, not per batch: a run lasts release_job_seconds, and the
        # store refreshes a token THROTTLE_TOKEN_REFRESH_MARGIN_SECONDS before it expires.
        # A 401 replaces it.
        self.token: str | None = None
        # A failure ends the run, so the first success clears the failure streak for all.
        self.streak_cleared = False
        paused = self.schedule.paused_for(queue_id)
        if paused > 0:  # woken early by the cleaner or an admission: keep the backoff
            report.stopped = f"backing off for {paused:.1f}s"
            self.schedule.wake([queue_id], paused)
            report.next_run_in = paused
            return report
        deadline = time.monotonic() + self.settings.release_job_seconds
        stop: _Stop | None = None
        while time.monotonic() < deadline:
            started = time.monotonic()  # before the claim: its lease cannot start earlier
            claim = claims.claim_next(
                self.session,
                queue_id,
                self.settings.release_batch_size,
                self.settings.lease_seconds,
                self.lead,
            )
            if isinstance(claim, Idle):
                break
            report.claimed += len(claim.rows)
            lease_deadline = started + claim.lease_seconds
            if claim.send_delay > 0:
                self.sleep(claim.send_delay)
            stop = self._deliver(claim, lease_deadline, report)
            if stop is not None:
                report.stopped = stop.reason
                break
        if stop is not None and stop.pause:
            self.schedule.pause(queue_id, stop.wait)
        report.next_run_in = self._schedule_next(queue_id, stop)
        return report

    def _schedule_next(self, queue_id: int, stop: _Stop | None) -> float | None:
        if stop is not None and not stop.wake:
            return None
        delay = claims.next_look(self.session, queue_id, self.lead)
        if delay is None:
            return None
        delay = max(delay, stop.wait if stop else 0.0)
        self.schedule.wake([queue_id], delay)
        return delay

    def _deliver(self, claim: Claim, lease_deadline: float, report: ReleaseReport) -> _Stop | None:
        try:
            if self.token is None:
                self.heartbeat()  # a refresh may take a while (lock wait, retries)
            token = self.token or self.tokens.access_token_for(claim.portal_id)
        except PortalUnavailable as exc:
            report.given_back += outcomes.give_back(self.session, claim, claim.rows)
            return _unavailable(exc)
        by_outcome: dict[str, list[ClaimedRow]] = {}
        for row in claim.rows:
            by_outcome.setdefault(row.outcome, []).append(row)
        pending = list(by_outcome.items())
        for index, (state, rows) in enumerate(pending):
            sender = _Sender(self, claim, token, lease_deadline, report)
            stop = sender.send(rows, state)
            self.token = token = sender.token  # refreshed after a 401, if it was
            if stop is not None:
                rest = [row for _, later in pending[index + 1 :] for row in later]
                if rest:
                    report.given_back += outcomes.give_back(self.session, claim, rest)
                return stop
        return None


class _Sender:
    """Sends one claim's rows, isolating bad callbacks by halving a refused batch."""

    def __init__(
        self, releaser: Releaser, claim: Claim, token: str, deadline: float, report: ReleaseReport
    ) -> None:
        self.r = releaser
        self.claim = claim
        self.token = token
        self.deadline = deadline
        self.report = report
        self.refreshed = False

    def send(self, rows: list[ClaimedRow], state: str) -> _Stop | None:
        r, claim, report = self.r, self.claim, self.report
        if time.monotonic() + r.call_budget > self.deadline:
            report.given_back += outcomes.give_back(r.session, claim, rows)
            return _Stop("lease about to end")
        pairs = [(row.callback_id, state) for row in rows]
        r.heartbeat()
        try:
            report.calls += 1
            refused = r.client.complete_callbacks(
                claim.portal_id, self.token, pairs, deadline=self.deadline - CALL_MARGIN_SECONDS
            )
            answered_at = time.monotonic()
        except Unauthorized:
            return self._unauthorized(rows, state)
        except (RateLimited, BucketWait, TooLate) as exc:
            report.given_back += outcomes.give_back(r.session, claim, rows)
            return _Stop(str(exc), wait=exc.wait)
        except NotSent as exc:
            report.given_back += outcomes.give_back(r.session, claim, rows)
            return self._outage(str(exc))
        except Transient as exc:
            self._retry(rows, f"HubSpot call failed: {exc}")
            return self._outage(str(exc))
        except Refused as exc:
            return self._refused(rows, exc)
        except Rejected as exc:
            return self._isolate(rows, state, exc)
        report.completed += outcomes.mark_completed(r.session, claim, rows, refused, answered_at)
        report.failed += len(refused)
        if not r.streak_cleared:  # after the commit: Redis must not block a mark
            r.schedule.succeeded(claim.queue_id)
            r.streak_cleared = True
        return None

    def _outage(self, reason: str) -> _Stop:
        """HubSpot unreachable or failing: stop, and pause longer the longer it lasts."""
        s = self.r.settings
        streak = self.r.schedule.failure_streak(self.claim.queue_id)
        wait = backoff_seconds(streak, s.retry_base_seconds, s.retry_max_seconds)
        return _Stop(reason, wait=wait, pause=True)

    def _refused(self, rows: list[ClaimedRow], exc: Refused) -> _Stop:
        """A refusal of the whole request: no callback is at fault, so none fails for it."""
        r, claim = self.r, self.claim
        self.report.given_back += outcomes.give_back(r.session, claim, rows)
        wait = r.settings.refused_backoff_seconds
        log.warning(
            "HubSpot refused the callback request for portal %s with HTTP %s (%s);"
            " queue %s pauses %.0fs",
            claim.portal_id,
            exc.status,
            exc.message,
            claim.queue_id,
            wait,
        )
        return _Stop(f"HubSpot refused the request: {exc}", wait=wait, pause=True)

    def _unauthorized(self, rows: list[ClaimedRow], state: str) -> _Stop | None:
        r = self.r
        if self.refreshed:
            # A fresh token refused too: the app's access to the portal is broken, not these
            # callbacks. Nothing fails for it; the queue backs off like during an outage.
            self.report.given_back += outcomes.give_back(r.session, self.claim, rows)
            log.warning(
                "HubSpot refused a freshly refreshed access token for portal %s (401); queue %s"
                " backs off",
                self.claim.portal_id,
                self.claim.queue_id,
            )
            return self._outage("HubSpot refused a freshly refreshed access token (401)")
        self.refreshed = True
        r.heartbeat()  # the refresh may wait for the row lock and retry
        try:
            self.token = r.tokens.refresh_after_unauthorized(self.claim.portal_id, self.token)
        except PortalUnavailable as exc:
            self.report.given_back += outcomes.give_back(r.session, self.claim, rows)
            return _unavailable(exc)
        return self.send(rows, state)

    def _retry(self, rows: list[ClaimedRow], reason: str) -> None:
        s = self.r.settings
        outcomes.mark_retry(
            self.r.session,
            self.claim,
            rows,
            reason,
            s.max_attempts,
            s.retry_base_seconds,
            s.retry_max_seconds,
        )
        self.report.retried += len(rows)

    def _isolate(self, rows: list[ClaimedRow], state: str, exc: Rejected) -> _Stop | None:
        """A 4xx that can be about one callback: halve the batch until the refused callbacks
        stand alone and fail."""
        if len(rows) == 1:
            outcomes.mark_rejected(self.r.session, self.claim, rows[0], f"HubSpot refused: {exc}")
            self.report.failed += 1
            return None
        middle = len(rows) // 2
        halves = [rows[:middle], rows[middle:]]
        for index, half in enumerate(halves):
            stop = self.send(half, state)
            if stop is not None:
                rest = [row for later in halves[index + 1 :] for row in later]
                if rest:
                    self.report.given_back += outcomes.give_back(self.r.session, self.claim, rest)
                return stop
        return None
