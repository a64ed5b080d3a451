"""RQ jobs: thin, they take ids, build nothing but the process's services, and call the domain.

Each worker process creates the app once (`job_app`). Jobs run in that process (SimpleWorker);
a process forked from it (the release clock) must not reuse its database connections, so the
engine pool is dropped in the child after a fork.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from flask import Flask
from rq import get_current_job

from throttle_app.extensions import current_settings, db, redis_client
from throttle_app.hubspot.bucket import TokenBucket
from throttle_app.hubspot.callbacks import HubSpotClient
from throttle_app.oauth import tokens as oauth_tokens
from throttle_app.release import cleaner
from throttle_app.release.releaser import PortalUnavailable, Releaser
from throttle_app.release.schedule import app_schedule
from throttle_app.telemetry.logs import log_context
from throttle_app.telemetry.metrics import worker_metrics

_app: Flask | None = None


def job_app() -> Flask:
    """This process's app (created on first use; inherited by forked children)."""
    global _app
    if _app is None:
        from throttle_app import create_app

        _app = create_app()
    return _app


def _after_fork_in_child() -> None:
    if _app is not None:
        with _app.app_context():
            db.engine.dispose(close=False)  # SQLAlchemy's "pools and os.fork" recipe


os.register_at_fork(after_in_child=_after_fork_in_child)


class OAuthTokens:
    """The OAuth token store, as the release engine sees it."""

    def __init__(self, retry_seconds: float) -> None:
        self.retry_seconds = retry_seconds

    def access_token_for(self, portal_id: int) -> str:
        return self._call(oauth_tokens.access_token_for, portal_id)

    def refresh_after_unauthorized(self, portal_id: int, rejected_token: str) -> str:
        return self._call(oauth_tokens.refresh_after_unauthorized, portal_id, rejected_token)

    def _call(self, function, *args) -> str:
        try:
            return function(*args)
        except oauth_tokens.PortalDisconnected as exc:
            raise PortalUnavailable(str(exc)) from None
        except oauth_tokens.TokenUnavailable as exc:
            raise PortalUnavailable(str(exc), retry_in=self.retry_seconds) from None


def hubspot_client() -> HubSpotClient:
    settings = current_settings()
    bucket = TokenBucket(
        redis_client(), settings.bucket_capacity, settings.bucket_refill_per_second
    )
    return HubSpotClient(settings, bucket)


def _heartbeat() -> None:
    """Tell RQ (and the release clock's stale-job check) that this job is alive. The Releaser
    calls it before every HubSpot call and token refresh, so a live job is never stale."""
    job = get_current_job()
    if job is not None:
        job.heartbeat(datetime.now(UTC), ttl=int(current_settings().stale_job_seconds * 2))


@contextmanager
def _job_context(job: str, **fields: object) -> Iterator[None]:
    """Log fields (the job, its RQ id, ...) and the job's duration and failure metrics."""
    current = get_current_job()
    job_id = current.id if current is not None else None
    with log_context(job=job, job_id=job_id, **fields), worker_metrics.observe_job(job):
        yield


def release(queue_id: int) -> dict:
    """Release one queue for up to THROTTLE_RELEASE_JOB_SECONDS (the `releases` queue)."""
    with job_app().app_context(), _job_context("release", queue_id=queue_id):
        try:
            settings = current_settings()
            tokens = OAuthTokens(settings.retry_base_seconds)
            releaser = Releaser(
                settings,
                db.session,
                hubspot_client(),
                app_schedule(),
                tokens,
                heartbeat=_heartbeat,
            )
            report = releaser.run(queue_id)
            worker_metrics.count_releases(report)
            return dataclasses.asdict(report)
        finally:
            db.session.remove()


def clean() -> dict:
    """The periodic cleaner (the `maintenance` queue, on rq-scheduler)."""
    with job_app().app_context(), _job_context("clean"):
        try:
            lead = timedelta(milliseconds=current_settings().release_lead_ms)
            return dataclasses.asdict(cleaner.clean(db.session, app_schedule(), lead))
        finally:
            db.session.remove()


def purge() -> int:
    """Delete terminal executions older than THROTTLE_RETENTION_DAYS (daily)."""
    with job_app().app_context(), _job_context("purge"):
        try:
            settings = current_settings()
            retention = timedelta(days=settings.retention_days)
            return cleaner.purge(db.session, retention, settings.purge_batch_size)
        finally:
            db.session.remove()
