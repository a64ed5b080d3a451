"""One run of a queue's release job: claim what the window allows, send it to HubSpot, and ask
for the next run. Every decision about budget lives in claims.py, every row update in
outcomes.py, a claim's lease in leases.py, what each HubSpot answer costs in sending.py; this
module runs the loop that connects them.

A run:
- looks up the portal's access token first (a refresh may take a while, and no claim waits for
  it);
- claims a batch at a time until the window is spent or THROTTLE_RELEASE_JOB_SECONDS are up;
- keeps a watch on its queue while it holds a claim (ReleaseSchedule.watch), so a killed worker's
  queue is taken over as soon as its lease ends;
- stops at its next step when the worker is asked to stop (SIGTERM: `stopping`), giving back
  what it has not sent, and schedules the queue's next run either way.

A queue that backs off (schedule.PAUSE_KEY in Redis; not the operator's pause in
throttle_queues.paused, which a resume clears) only reschedules early wake-ups (cleaner,
admissions) to the back-off's end.

Time: a claim's lease counts from before the claim, and a call starts only when the bucket wait,
the HTTP timeouts and a margin fit in what is left of it (Settings.call_budget_seconds), checked
again after the bucket gave its token; the lease is renewed when it would not fit (leases.py).
So no send lands after its lease ended. The job heartbeats before every HubSpot call and token
lookup (the release clock also replaces jobs whose heartbeat is older than
Settings.stale_job_seconds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session

from throttle_app.config import Settings
from throttle_app.hubspot.callbacks import HubSpotClient
from throttle_app.release import claims, next_look, outcomes
from throttle_app.release.claims import Claim, ClaimedRow, Idle
from throttle_app.release.leases import Lease
from throttle_app.release.schedule import ReleaseSchedule
from throttle_app.release.sending import (
    STOPPING,
    ClaimSender,
    PortalUnavailable,
    ReleaseReport,
    Stop,
    TokenSource,
    backoff_seconds,
    unavailable,
)

__all__ = ["PortalUnavailable", "ReleaseReport", "Releaser", "TokenSource", "backoff_seconds"]

log = logging.getLogger(__name__)


# The longest wait for a queue's next window that a release job spends in place of ending and
# being scheduled again (a new job starts in tens to hundreds of milliseconds).
STAY_SECONDS = 0.5


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
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        """`stopping()`: True once the worker must stop (the run ends at its next step)."""
        self.settings = settings
        self.session = session
        self.client = client
        self.schedule = schedule
        self.tokens = tokens
        self.sleep = sleep
        self.heartbeat = heartbeat
        self.stopping = stopping
        self.lead = timedelta(milliseconds=settings.release_lead_ms)
        # A call may only start when it surely ends (bucket wait, timeouts) before its lease.
        self.call_budget = settings.call_budget_seconds
        # The portal bucket's emission interval: a spread window is never shorter.
        self.min_call_interval = 1.0 / settings.bucket_refill_per_second

    def run(self, queue_id: int) -> ReleaseReport:
        report = ReleaseReport()
        # A failure ends the run, so the first success clears the failure streak for all.
        self.streak_cleared = False
        paused = self.schedule.paused_for(queue_id)
        if paused > 0:  # woken early by the cleaner or an admission: keep the backoff
            report.stopped = f"backing off for {paused:.1f}s"
            self.schedule.wake([queue_id], paused)
            report.next_run_in = paused
            return report
        self.watched = False
        stop = self._token(queue_id) or self._claim_and_send(queue_id, report)
        if stop is not None:
            report.stopped = stop.reason
            if stop.pause:
                self.schedule.pause(queue_id, stop.wait)
        if self.watched:  # a crash leaves the watch: the clock takes over when it falls due
            self.schedule.unwatch(queue_id)
        report.next_run_in = self._schedule_next(queue_id, stop)
        return report

    def _token(self, queue_id: int) -> Stop | None:
        """Look up the portal's access token once per run, before any claim: a run lasts
        release_job_seconds, the store refreshes a token THROTTLE_TOKEN_REFRESH_MARGIN_SECONDS
        before it expires, and a 401 replaces it."""
        self.token = ""  # nosec B105 # forgets the last run's token; no secret
        portal_id = claims.portal_of(self.session, queue_id)
        if portal_id is None:
            return Stop("no such queue", wake=False)
        self.heartbeat()  # a refresh may take a while (lock wait, retries)
        try:
            self.token = self.tokens.access_token_for(portal_id)
        except PortalUnavailable as exc:
            return unavailable(exc)
        return None

    def _claim_and_send(self, queue_id: int, report: ReleaseReport) -> Stop | None:
        deadline = time.monotonic() + self.settings.release_job_seconds
        window: float | None = None  # the period of this run's latest claimed window
        while time.monotonic() < deadline:
            if self.stopping():
                return Stop(STOPPING)
            started = time.monotonic()  # before the claim: its lease cannot start earlier
            claim = claims.claim_next(
                self.session,
                queue_id,
                self.settings.release_batch_size,
                self.settings.lease_seconds,
                self.lead,
                self.min_call_interval,
            )
            if isinstance(claim, Idle):
                # A queue whose windows are under STAY_SECONDS apart (spread: k*T/N) waits for
                # its next one here: a new job would cost more than the wait and open it late.
                if not 0 < (window or STAY_SECONDS + 1) <= STAY_SECONDS:
                    return None
                due = next_look.next_look(self.session, queue_id, self.lead)
                if due is None or not 0 < due <= STAY_SECONDS or time.monotonic() + due >= deadline:
                    return None  # (0: ready yet unclaimable, e.g. locked: the schedule retries)
                self.heartbeat()
                self.sleep(due)
                continue
            window = claim.window_seconds
            self.schedule.watch(queue_id, claim.lease_seconds)
            self.watched = True
            report.claimed += len(claim.rows)
            lease = Lease(self.session, self.schedule, claim, started)
            if claim.send_delay > 0:
                self.sleep(claim.send_delay)
            stop = self._deliver(claim, lease, report)
            report.renewals += lease.renewals
            if stop is not None:
                return stop
        return None

    def _schedule_next(self, queue_id: int, stop: Stop | None) -> float | None:
        if stop is not None and not stop.wake:
            return None
        delay = next_look.next_look(self.session, queue_id, self.lead)
        if delay is None:
            return None
        delay = max(delay, stop.wait if stop else 0.0)
        self.schedule.wake([queue_id], delay)
        return delay

    def _deliver(self, claim: Claim, lease: Lease, report: ReleaseReport) -> Stop | None:
        """Send the claim's rows, one call per outcome state (and more when a batch is halved);
        give back the rows a stop leaves unsent."""
        by_outcome: dict[str, list[ClaimedRow]] = {}
        for row in claim.rows:
            by_outcome.setdefault(row.outcome, []).append(row)
        pending = list(by_outcome.items())
        sender = ClaimSender(self, claim, self.token, lease, report)
        for index, (state, rows) in enumerate(pending):
            stop = sender.send(rows, state)
            self.token = sender.token  # refreshed after a 401, if it was
            if stop is not None:
                rest = [row for _, later in pending[index + 1 :] for row in later]
                if rest:
                    report.given_back += outcomes.give_back(self.session, claim, rest)
                return stop
        return None
