"""Sending one claim's rows to HubSpot, and what each answer costs.

Every HubSpot answer is typed by hubspot/callbacks.py, every row update is in outcomes.py, and
each completion carries the output fields of completion_fields.py; this module decides which
update an answer leads to:
- 429 or an empty bucket: the rows go back without an attempt (being limited is not a failure).
- 5xx, 408, a read timeout or a broken connection (HubSpot may have acted), and a connection
  that could not be made (the request never left): a transient failure. The same rows are sent
  again promptly, inside the same window, after a short jittered pause
  (THROTTLE_TRANSIENT_RETRY_DELAY_MS, doubling), up to THROTTLE_TRANSIENT_RETRIES times per
  claim: a retry resends the window's own callbacks, it never adds one to the window. When the
  retries are spent the failure is an outage: after a possible send each row counts one attempt
  (and backs off on its own), after a connection that was never made the rows go back without
  one, and the queue stops and backs off exponentially with jitter over its consecutive failures
  (THROTTLE_RETRY_BASE_SECONDS doubling up to THROTTLE_RETRY_MAX_SECONDS), so an outage neither
  burns the window's budget in a loop nor pushes rows to their attempt limit.
- 400, 404, 409, 410, 413, 422 on a batch can be about one callback: the batch is halved until
  the refused callbacks stand alone and fail; their neighbours complete.
- A 401 refreshes the token once; a 401 for the fresh token too gives the rows back and backs the
  queue off like an outage (the app's access is broken, not the callbacks).
- Any other 4xx (403 missing scope, 405, 415, ...) is about the app, the portal or the request:
  failing callbacks one by one for it would fail the whole backlog and push our error rate past
  HubSpot's 5%. The rows go back without an attempt, the queue backs off for
  THROTTLE_REFUSED_BACKOFF_SECONDS, and a warning names the portal and the status.

Before every call the sender checks that the worker is not stopping (SIGTERM: the rows not sent
yet go back at once, see workers/worker.py) and that the claim's lease covers the call, renewing
it when it would not (leases.py); then it heartbeats.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
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
from throttle_app.release import outcomes
from throttle_app.release.claims import Claim, ClaimedRow
from throttle_app.release.completion_fields import completions
from throttle_app.release.leases import Lease
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
    """What one run of a queue's release job did (the job's result, and its metrics)."""

    claimed: int = 0
    completed: int = 0
    calls: int = 0
    retried: int = 0
    failed: int = 0
    given_back: int = 0
    prompt_retries: int = 0  # calls sent again at once after a transient failure
    renewals: int = 0  # lease renewals
    stopped: str | None = None
    next_run_in: float | None = None


class Run(Protocol):
    """What a sender uses of the run it belongs to (releaser.Releaser)."""

    settings: Settings
    session: Session
    client: HubSpotClient
    schedule: ReleaseSchedule
    tokens: TokenSource
    call_budget: float
    streak_cleared: bool  # a call of this run went through: the failure streak is cleared
    sleep: Callable[[float], None]
    heartbeat: Callable[[], None]
    stopping: Callable[[], bool]


@dataclass(frozen=True)
class Stop:
    """Why a run stops, and when its queue may be looked at again."""

    reason: str
    wait: float = 0.0  # seconds before the queue may be looked at again
    wake: bool = True  # False: nothing will change until something else wakes the queue
    pause: bool = False  # True: early wake-ups (cleaner, admissions) wait for `wait` too


STOPPING = "the worker is stopping"


def unavailable(exc: PortalUnavailable) -> Stop:
    if exc.retry_in is None:
        return Stop(f"portal unavailable: {exc}", wake=False)
    return Stop(f"no token yet: {exc}", wait=exc.retry_in)


def backoff_seconds(streak: int, base: float, cap: float) -> float:
    """The pause after `streak` failures in a row: base doubling up to cap, times 0.5..1 jitter
    (the per-row retry backoff of outcomes.mark_retry, the queue's, and a prompt retry's)."""
    return min(cap, base * 2 ** min(streak - 1, 30)) * (0.5 + random.random() / 2)  # nosec B311 # jitter


class ClaimSender:
    """Sends one claim's rows: prompt retries of transient failures, halving of refused
    batches, one token refresh after a 401."""

    def __init__(
        self, run: Run, claim: Claim, token: str, lease: Lease, report: ReleaseReport
    ) -> None:
        self.r = run
        self.claim = claim
        self.token = token
        self.lease = lease
        self.report = report
        self.refreshed = False
        self.retries_left = run.settings.transient_retries

    def send(self, rows: list[ClaimedRow], state: str) -> Stop | None:
        r, claim, report = self.r, self.claim, self.report
        while True:
            if r.stopping():
                report.given_back += outcomes.give_back(r.session, claim, rows)
                return Stop(STOPPING)
            if not self.lease.ensure(rows, r.call_budget):
                report.given_back += outcomes.give_back(r.session, claim, rows)
                return Stop("the claim's lease ran out before the call")
            r.heartbeat()
            try:
                report.calls += 1
                refused = r.client.complete_callbacks(
                    claim.portal_id,
                    self.token,
                    completions(rows, state, datetime.now(UTC)),  # waited until this send
                    deadline=self.lease.deadline - CALL_MARGIN_SECONDS,
                )
                answered_at = time.monotonic()
            except Unauthorized:
                return self._unauthorized(rows, state)
            except (RateLimited, BucketWait, TooLate) as exc:
                report.given_back += outcomes.give_back(r.session, claim, rows)
                return Stop(str(exc), wait=exc.wait)
            except NotSent as exc:
                if self._retry_promptly(sent=False):
                    continue
                report.given_back += outcomes.give_back(r.session, claim, rows)
                return self._outage(str(exc))
            except Transient as exc:
                # Only an error answer is resent at once: a call whose answer never came may
                # have completed the callbacks, and resending them would start more than N
                # sends in the window (tests/faults/test_hubspot_faults.py).
                if exc.answered and self._retry_promptly(sent=True):
                    continue
                self._retry(rows, f"HubSpot call failed: {exc}")
                return self._outage(str(exc))
            except Refused as exc:
                return self._refused(rows, exc)
            except Rejected as exc:
                return self._isolate(rows, state, exc)
            break
        report.completed += outcomes.mark_completed(r.session, claim, rows, refused, answered_at)
        report.failed += len(refused)
        if not r.streak_cleared:  # after the commit: Redis must not block a mark
            r.schedule.succeeded(claim.queue_id)
            r.streak_cleared = True
        return None

    def _retry_promptly(self, sent: bool) -> bool:
        """Spend one of the claim's prompt retries (none while the worker stops): record the
        failed call as a send when it may have reached HubSpot (`sent`), then pause a jittered
        moment, shorter than the queue's back-off would be."""
        s = self.r.settings
        if self.retries_left <= 0 or self.r.stopping():
            return False
        if sent:
            outcomes.record_send(self.r.session, self.claim, time.monotonic())
        self.retries_left -= 1
        done = s.transient_retries - self.retries_left
        first = s.transient_retry_delay_ms / 1000
        self.r.sleep(backoff_seconds(done, first, max(first, s.retry_base_seconds)))
        self.report.prompt_retries += 1
        return True

    def _outage(self, reason: str) -> Stop:
        """HubSpot unreachable or failing: stop, and pause longer the longer it lasts."""
        s = self.r.settings
        streak = self.r.schedule.failure_streak(self.claim.queue_id)
        wait = backoff_seconds(streak, s.retry_base_seconds, s.retry_max_seconds)
        return Stop(reason, wait=wait, pause=True)

    def _refused(self, rows: list[ClaimedRow], exc: Refused) -> Stop:
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
        return Stop(f"HubSpot refused the request: {exc}", wait=wait, pause=True)

    def _unauthorized(self, rows: list[ClaimedRow], state: str) -> Stop | None:
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
        # the refresh may wait for the row lock and retry: the lease must outlast it
        if not self.lease.ensure(rows, r.settings.token_refresh_budget_seconds):
            self.report.given_back += outcomes.give_back(r.session, self.claim, rows)
            return Stop("the claim's lease ran out before the token refresh")
        r.heartbeat()
        try:
            self.token = r.tokens.refresh_after_unauthorized(self.claim.portal_id, self.token)
        except PortalUnavailable as exc:
            self.report.given_back += outcomes.give_back(r.session, self.claim, rows)
            return unavailable(exc)
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

    def _isolate(self, rows: list[ClaimedRow], state: str, exc: Rejected) -> Stop | None:
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
