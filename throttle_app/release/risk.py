"""Expiry risk: will a queue's backlog be released before HubSpot's holds run out?

HubSpot keeps a BLOCKed record for the hold we answered; when the hold ends, HubSpot moves the
record on by itself, unthrottled (the cleaner then marks it expired). A queue is **at risk**
when its backlog, released at its rate and policy (windows, days, start time, spread), would
not all be out before the oldest pending execution's hold ends: from that instant records may
leave the queue unthrottled. Releases are oldest first, so the oldest hold is the first to
lapse; the check is conservative (it never misses a lapse: any record that lapses is released
no later than the last one, after a hold that ends no earlier than the oldest one).

A queue that releases nothing (paused by an operator, or its portal disconnected or not
installed) is at risk as soon as it holds anything; a draining queue (the operator asked for
everything now, as fast as HubSpot allows) is not.

Pure: no database, no Redis, no clock of its own. `now` is a parameter, so tests move time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from throttle_app.release.policy import ReleasePolicy, release_eta


@dataclass(frozen=True)
class Risk:
    """One queue's outlook at an instant.

    `drain_eta`: when the last execution of the backlog would be released (None: nothing held,
    or it would never be: paused, disconnected, draining at an unknown pace). `expires_at`: when
    the first record would expire unthrottled if the queue does not catch up (the oldest pending
    hold's end), set only when `at_risk`."""

    at_risk: bool
    drain_eta: datetime | None
    expires_at: datetime | None
    reason: str | None = None  # why, in a few words, when at risk


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
    releasing: bool = True  # False: paused, or the portal is disconnected / not installed
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
    eta = release_eta(
        outlook.policy,
        outlook.zone,
        outlook.max_throughput,
        outlook.period_seconds,
        outlook.backlog,
        now,
        outlook.next_release_at,
    )
    if hold_end is None:
        return Risk(False, eta, None)
    if eta is None or eta > hold_end:
        return Risk(True, eta, hold_end, "drains after the oldest hold ends")
    return Risk(False, eta, None)
