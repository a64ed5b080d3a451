"""Expiry risk: will a queue's backlog be released before HubSpot's holds run out?

HubSpot keeps a BLOCKed record for the hold we answered; when the hold ends, HubSpot moves the
record on by itself, unthrottled (the cleaner then marks it expired). A queue is **at risk**
when its backlog, released at its rate and policy (windows, days, start time, spread), would
not all be out before the oldest pending execution's hold ends: from that instant records may
leave the queue unthrottled. Releases are oldest first, so the oldest hold is the first to
lapse; the check is conservative (it never misses a lapse: any record that lapses is released
no later than the last one, after a hold that ends no earlier than the oldest one).

A queue whose portal cannot release (disconnected or not installed) is at risk as soon as it
holds anything. A queue an operator paused is judged as if resumed now: it becomes at risk once
waiting longer would let records lapse (a deliberate pause alone raises no alarm). A draining
queue (the operator asked for everything now, as fast as HubSpot allows) is not at risk.

Pure: no database, no Redis, no clock of its own. `now` is a parameter, so tests move time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from throttle_app.release.policy import ReleasePolicy, release_eta


@dataclass(frozen=True)
class Risk:
    """One queue's outlook at an instant.

    `drain_eta`: when the last execution of the backlog would be released (None: nothing held,
    or it would never be: the portal is disconnected, or draining at an unknown pace; for a
    paused queue: if resumed now). `expires_at`: when
    the first record would expire unthrottled if the queue does not catch up (the oldest pending
    hold's end), set only when `at_risk`."""

    at_risk: bool
    drain_eta: datetime | None
    expires_at: datetime | None
    reason: str | None = None  # why, in a few words, when at risk
    # True: `drain_eta` is a lower bound (the rate alone, without the policy's times: already
    # after the hold, so the policy's longer walk was not needed to know the queue is at risk).
    eta_at_least: bool = False


NO_RISK = Risk(False, None, None)


@dataclass(frozen=True)
class Outlook:
    """What the risk of one queue depends on (QueueStatus fields, in domain terms)."""

    policy: ReleasePolicy
    zone: ZoneInfo
    max_throughput: int  # the effective rate: N ...
    period_seconds: int  # ... per T
    backlog: int  # pending + claimed executions
    oldest_hold_expiry: datetime | None  # the oldest pending execution's hold end
    next_release_at: datetime | None = None  # the queue's next window (claims.py)
    releasing: bool = True  # False: the portal is disconnected or not installed
    draining: bool = False


def assess(outlook: Outlook, now: datetime) -> Risk:
    """The queue's drain ETA and whether it is at risk at `now` (see the module docstring)."""
    if outlook.backlog <= 0 or outlook.draining:
        return NO_RISK
    hold_end = outlook.oldest_hold_expiry
    if not outlook.releasing:
        if hold_end is None:  # only claimed rows, in flight: nothing left to lapse
            return NO_RISK
        return Risk(True, None, hold_end, "not releasing")
    if outlook.policy.restricts_time and hold_end is not None:
        # Days, windows and a start time only ever delay releases: when the rate alone drains
        # after the hold, so does the policy (its walk may take thousands of spans).
        unrestricted = replace(outlook, policy=ReleasePolicy(mode=outlook.policy.mode))
        floor = _eta(unrestricted, outlook.backlog, now)
        if floor is not None and floor > hold_end:
            return Risk(True, floor, hold_end, "drains after the oldest hold ends", True)
    eta = _eta(outlook, outlook.backlog, now)
    if hold_end is None:
        return Risk(False, eta, None)
    if eta is None or eta > hold_end:
        return Risk(True, eta, hold_end, "drains after the oldest hold ends")
    return Risk(False, eta, None)


def next_release(outlook: Outlook, now: datetime) -> datetime | None:
    """When the queue's next execution would be released (its next window and policy)."""
    if outlook.backlog <= 0 or not outlook.releasing:
        return None
    return now if outlook.draining else _eta(outlook, 1, now)


def _eta(outlook: Outlook, backlog: int, now: datetime) -> datetime | None:
    return release_eta(
        outlook.policy,
        outlook.zone,
        outlook.max_throughput,
        outlook.period_seconds,
        backlog,
        now,
        outlook.next_release_at,
    )
