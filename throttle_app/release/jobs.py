"""RQ jobs: thin; they take ids, use the process's services and call the domain.

The worker bootstrap (workers/worker.py) builds the app and its services once and `bind`s them
here before the first job runs; a job in a process that bound nothing fails at once with a clear
error. The bootstrap calls `request_stop` when the worker is asked to stop (SIGTERM): a running
release job then ends at its next step and gives back what it has not sent.

Jobs run in that process (SimpleWorker); a process forked from it (the release clock) must not
reuse its database connections, so the engine pool is dropped in the child after a fork.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol

from flask import Flask
from rq import get_current_job

from throttle_app.config import Settings
from throttle_app.extensions import db
from throttle_app.hubspot.callbacks import HubSpotClient
from throttle_app.oauth.time_zones import PortalZones
from throttle_app.oauth.tokens import PortalDisconnected, TokenStore, TokenUnavailable
from throttle_app.release import cleaner
from throttle_app.release.releaser import PortalUnavailable, Releaser
from throttle_app.release.schedule import ReleaseSchedule
from throttle_app.telemetry.logs import log_context
from throttle_app.telemetry.worker_metrics import RedisMetrics


class ReleaseServices(Protocol):
    """What the jobs use of the process's services (throttle_app.services.Services)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def metrics(self) -> RedisMetrics: ...
    @property
    def schedule(self) -> ReleaseSchedule: ...
    @property
    def hubspot(self) -> HubSpotClient: ...
    @property
    def tokens(self) -> TokenStore: ...
    @property
    def zones(self) -> PortalZones: ...


_bound: tuple[Flask, ReleaseServices] | None = None
_stopping = threading.Event()


def request_stop() -> None:
    """The worker is stopping: running and later release jobs end at their next step."""
    _stopping.set()


def bind(app: Flask, services: ReleaseServices) -> None:
    """Give this process's app (for its database session) and services to the jobs."""
    global _bound
    _bound = (app, services)


def job_path(function: Callable) -> str:
    """The dotted path RQ stores for a job function (one spelling for every enqueuer)."""
    return f"{function.__module__}.{function.__qualname__}"


def _services() -> tuple[Flask, ReleaseServices]:
    if _bound is None:
        raise RuntimeError("no services bound: jobs run in workers/worker.py's process")
    return _bound


def _after_fork_in_child() -> None:
    if _bound is not None:
        with _bound[0].app_context():
            db.engine.dispose(close=False)  # SQLAlchemy's "pools and os.fork" recipe


os.register_at_fork(after_in_child=_after_fork_in_child)


class OAuthTokens:
    """The OAuth token store, as the release engine sees it."""

    def __init__(self, store: TokenStore, retry_seconds: float) -> None:
        self._store = store
        self.retry_seconds = retry_seconds

    def access_token_for(self, portal_id: int) -> str:
        return self._call(self._store.access_token_for, portal_id)

    def refresh_after_unauthorized(self, portal_id: int, rejected_token: str) -> str:
        return self._call(self._store.refresh_after_unauthorized, portal_id, rejected_token)

    def _call(self, function: Callable[..., str], *args: object) -> str:
        try:
            return function(*args)
        except PortalDisconnected as exc:
            raise PortalUnavailable(str(exc)) from None
        except TokenUnavailable as exc:
            raise PortalUnavailable(str(exc), retry_in=self.retry_seconds) from None


def _heartbeat(ttl_seconds: int) -> Callable[[], None]:
    """Tell RQ (and the release clock's stale-job check) that this job is alive. The Releaser
    calls it before every HubSpot call and token refresh, so a live job is never stale."""

    def beat() -> None:
        job = get_current_job()
        if job is not None:
            job.heartbeat(datetime.now(UTC), ttl=ttl_seconds)

    return beat


@contextmanager
def _job_context(services: ReleaseServices, job: str, **fields: object) -> Iterator[None]:
    """Log fields (the job, its RQ id, ...) and the job's duration and failure metrics."""
    current = get_current_job()
    job_id = current.id if current is not None else None
    with log_context(job=job, job_id=job_id, **fields), services.metrics.observe_job(job):
        yield


def release(queue_id: int) -> dict:
    """Release one queue for up to THROTTLE_RELEASE_JOB_SECONDS (the `releases` queue)."""
    app, services = _services()
    with app.app_context(), _job_context(services, "release", queue_id=queue_id):
        try:
            settings = services.settings
            releaser = Releaser(
                settings,
                db.session,
                services.hubspot,
                services.schedule,
                OAuthTokens(services.tokens, settings.retry_base_seconds),
                heartbeat=_heartbeat(int(settings.stale_job_seconds * 2)),
                stopping=_stopping.is_set,
            )
            report = releaser.run(queue_id)
            services.metrics.count_releases(report, queue_id)
            return dataclasses.asdict(report)
        finally:
            db.session.remove()


def clean() -> dict:
    """The periodic cleaner (the `maintenance` queue, on rq-scheduler)."""
    app, services = _services()
    with app.app_context(), _job_context(services, "clean"):
        try:
            lead = timedelta(milliseconds=services.settings.release_lead_ms)
            report = cleaner.clean(db.session, services.schedule, lead, zones=services.zones)
            return dataclasses.asdict(report)
        finally:
            db.session.remove()


def purge() -> dict:
    """Delete terminal executions older than THROTTLE_RETENTION_DAYS, then the queues empty and
    idle for as long (daily)."""
    app, services = _services()
    with app.app_context(), _job_context(services, "purge"):
        try:
            settings = services.settings
            retention = timedelta(days=settings.retention_days)
            executions = cleaner.purge(db.session, retention, settings.purge_batch_size)
            queues = cleaner.purge_queues(db.session, retention, settings.purge_batch_size)
            return {"executions": executions, "queues": queues}
        finally:
            db.session.remove()
