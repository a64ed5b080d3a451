"""Tables. Every durable fact of the service lives here, in PostgreSQL.

Execution states: ``pending`` (held, waiting for its window), ``claimed`` (leased by a release job),
``completed`` (HubSpot took SUCCESS), ``failed`` (completed with FAIL_CONTINUE after the attempt
limit), ``expired`` (HubSpot's hold ran out first, so HubSpot moved the record on by itself).
"""

from __future__ import annotations

import uuid
from datetime import datetime, time

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Time,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from throttle_app.extensions import db

PENDING, CLAIMED, COMPLETED, FAILED, EXPIRED = (
    "pending",
    "claimed",
    "completed",
    "failed",
    "expired",
)
STATES = (PENDING, CLAIMED, COMPLETED, FAILED, EXPIRED)
TERMINAL_STATES = (COMPLETED, FAILED, EXPIRED)
LIVE_STATES_SQL = "state IN ('pending', 'claimed')"  # the live index's predicate, as queries say it

# Storage parameters of action_executions (migration 0004): autovacuum after 1% of the table
# (plus 10,000 rows) changed instead of 20%, so the dead entries each state change leaves in
# the partial indexes are removed within hours, and the statistics follow the live share.
EXECUTIONS_AUTOVACUUM = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "10000",
    "autovacuum_analyze_scale_factor": "0.01",
    "autovacuum_analyze_threshold": "10000",
}


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class ThrottleQueue(db.Model):
    """One row per queue: its durable rate and the state of its release windows."""

    __tablename__ = "throttle_queues"
    __table_args__ = (
        UniqueConstraint("queue_key", name="uq_throttle_queues_queue_key"),
        CheckConstraint("max_throughput > 0", name="ck_throttle_queues_max_throughput"),
        CheckConstraint("period_seconds > 0", name="ck_throttle_queues_period"),
        CheckConstraint("window_budget >= 0", name="ck_throttle_queues_budget"),
        CheckConstraint(
            "release_mode IN ('burst', 'spread')", name="ck_throttle_queues_release_mode"
        ),
        CheckConstraint("release_days BETWEEN 1 AND 127", name="ck_throttle_queues_release_days"),
        CheckConstraint(
            "(window_start IS NULL) = (window_end IS NULL)", name="ck_throttle_queues_window"
        ),
        Index("ix_throttle_queues_portal", "portal_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    queue_key: Mapped[str] = mapped_column(String(128), nullable=False)
    portal_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # A named queue (queueName, shared by every workflow of the portal naming it) has workflow 0
    # and action `queue:<name>`, which is what a throttle_configs override of it names.
    workflow_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    action_id: Mapped[str] = mapped_column(String(72), nullable=False)
    queue_name: Mapped[str | None] = mapped_column(String(64))
    # The rate the latest execution arrived with; a throttle_configs row overrides it.
    max_throughput: Mapped[int] = mapped_column(Integer, nullable=False)
    period_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    # The release policy the latest execution arrived with (release/policy_store.py reads it):
    # mode, ISO weekdays as bits (bit d-1 = day d; NULL = every day), the local daily window,
    # its zone (NULL = the portal's) and the start time.
    release_mode: Mapped[str] = mapped_column(String(8), nullable=False, server_default="burst")
    release_days: Mapped[int | None] = mapped_column(SmallInteger)
    window_start: Mapped[time | None] = mapped_column(Time)
    window_end: Mapped[time | None] = mapped_column(Time)
    time_zone: Mapped[str | None] = mapped_column(String(64))
    start_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The current release window: releases left in it and its period. A new window opens only
    # once the budget is spent and `next_release_at` has passed; `next_release_at` is never earlier
    # than the last send + the period (see claims.py). NULL = idle: first executions go at once.
    window_budget: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    # Fractional for spread queues, whose windows are T/N (or a few T/N) apart.
    window_period_seconds: Mapped[float | None] = mapped_column(Double)
    window_opens_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_release_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    paused: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    draining: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class ActionExecution(db.Model):
    """One HubSpot execution request that we hold until its release."""

    __tablename__ = "action_executions"
    __table_args__ = (
        UniqueConstraint("callback_id", name="uq_action_executions_callback_id"),
        CheckConstraint(f"state IN {STATES!r}", name="ck_action_executions_state"),
        CheckConstraint("priority BETWEEN 0 AND 9", name="ck_action_executions_priority"),
        # The live rows (pending or claimed) of one queue, by state, highest priority first and
        # oldest first within a priority: the claim (in that order), next_look, hold expiry, the
        # metrics backlog and the queue listing. Terminal rows are kept for the retention
        # period and outnumber the live ones by far (12M to a few thousand at 350k executions a
        # day); no statement of the release, scrape, listing or cleaner paths reads them,
        # whatever their number. Expired holds are found per queue and priority through this
        # index: within a queue and priority, older rows expire first.
        Index(
            "ix_action_executions_live_priority",
            "queue_id",
            "state",
            text("priority DESC"),
            "id",
            postgresql_where=text(LIVE_STATES_SQL),
        ),
        # Claimed rows per queue and their leases (few at any time): the next window may open only
        # after every lease of the current one has ended; expired leases are reclaimed.
        Index(
            "ix_action_executions_claimed",
            "queue_id",
            "lease_expires_at",
            postgresql_where=text("state = 'claimed'"),
        ),
        # Terminal rows by age: the purge deletes the oldest first, a batch at a time.
        Index(
            "ix_action_executions_finished",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
        {"postgresql_with": EXECUTIONS_AUTOVACUUM},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    callback_id: Mapped[str] = mapped_column(String(255), nullable=False)
    # The queue's id. No foreign key, on purpose: an FK check would lock the queue row
    # (FOR KEY SHARE) once for every admitted execution. Admission writes the queue row before
    # its executions and takes that lock once per batch and queue instead; a queue is deleted
    # only when idle and empty, under a conflicting lock (release/cleaner.py, purge_queues).
    queue_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    portal_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    workflow_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    action_id: Mapped[str] = mapped_column(String(64), nullable=False)
    object_id: Mapped[int | None] = mapped_column(BigInteger)
    object_type: Mapped[str | None] = mapped_column(String(64))
    # The rate this execution arrived with.
    max_throughput: Mapped[int] = mapped_column(Integer, nullable=False)
    period_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    # 0-9: within a queue, higher is released first; FIFO (by id) within a priority.
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("0"))
    state: Mapped[str] = mapped_column(String(16), nullable=False, server_default=PENDING)
    # What the release completes the callback with: SUCCESS, or FAIL_CONTINUE once the attempt
    # limit is reached while HubSpot's hold is still live.
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, server_default="SUCCESS")
    hold_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    last_failure_reason: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ThrottleConfig(db.Model):
    """An operator's rate override for one action of one portal (the config API)."""

    __tablename__ = "throttle_configs"
    __table_args__ = (
        UniqueConstraint("portal_id", "action_id", name="uq_throttle_configs_portal_action"),
        CheckConstraint("max_throughput > 0", name="ck_throttle_configs_max_throughput"),
        CheckConstraint("time_period > 0", name="ck_throttle_configs_time_period"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    portal_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    action_id: Mapped[str] = mapped_column(String(72), nullable=False)  # queue:<name> too
    max_throughput: Mapped[int] = mapped_column(Integer, nullable=False)
    time_period: Mapped[int] = mapped_column(Integer, nullable=False)
    time_unit: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class OAuthToken(db.Model):
    """A portal's OAuth tokens, encrypted (oauth/cipher.py), and whether it is connected."""

    __tablename__ = "oauth_tokens"
    __table_args__ = (UniqueConstraint("portal_id", name="uq_oauth_tokens_portal_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    portal_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    access_token: Mapped[str] = mapped_column(Text, nullable=False)
    refresh_token: Mapped[str] = mapped_column(Text, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    hub_domain: Mapped[str | None] = mapped_column(String(255))
    installed_by: Mapped[str | None] = mapped_column(String(255))
    scopes: Mapped[str | None] = mapped_column(Text)
    app_id: Mapped[int | None] = mapped_column(BigInteger)
    disconnected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disconnect_reason: Mapped[str | None] = mapped_column(Text)
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The portal's IANA time zone from HubSpot's account details (NULL: not known yet, so UTC);
    # read at install, refreshed daily by the cleaner.
    time_zone: Mapped[str | None] = mapped_column(String(64))
    time_zone_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
