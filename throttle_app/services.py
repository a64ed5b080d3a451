"""The composition root's parts: every service a process needs, built once from its settings.

`create_app` (the web, the CLI) and the worker bootstrap (workers/worker.py, through create_app)
call `build_services` once per process; nothing in intake/, release/, oauth/ or hubspot/ builds a
service or reads the app: they take what they need as arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import Flask, current_app
from sqlalchemy import Engine

from throttle_app.config import Settings
from throttle_app.hubspot.bucket import TokenBucket
from throttle_app.hubspot.callbacks import HubSpotClient
from throttle_app.intake.admission import Admission
from throttle_app.oauth.cipher import TokenCipher
from throttle_app.oauth.time_zones import PortalZones
from throttle_app.oauth.tokens import TokenStore
from throttle_app.release.schedule import ReleaseSchedule
from throttle_app.release.wake_batcher import WakeBatcher
from throttle_app.telemetry.worker_metrics import RedisMetrics

EXTENSION_KEY = "throttle_services"


@dataclass(frozen=True)
class Services:
    """One process's services. Admission starts its writer threads on first use, so building
    it in a process that never admits (a worker, a CLI command) costs nothing."""

    settings: Settings
    redis: redis.Redis
    metrics: RedisMetrics  # the worker-side sink (Redis); web counters are telemetry/web_metrics
    schedule: ReleaseSchedule
    hubspot: HubSpotClient
    tokens: TokenStore
    zones: PortalZones  # the portals' time zones: asked at install and by the cleaner
    admission: Admission


def redis_connection(settings: Settings) -> redis.Redis:
    """The process's Redis client (redis-py connects lazily, on first use)."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        health_check_interval=30,
    )


def build_services(settings: Settings, connection: redis.Redis, engine: Engine) -> Services:
    metrics = RedisMetrics(connection)
    schedule = ReleaseSchedule.from_settings(connection, settings)
    bucket = TokenBucket(connection, settings.bucket_capacity, settings.bucket_refill_per_second)
    admission = Admission(
        engine,
        hold=settings.hold_duration,
        deadline_seconds=settings.admission_deadline_seconds,
        writers=settings.admission_writers,
        max_batch=settings.admission_batch_max,
        # After a batch commits: wake its queues' release jobs (coalesced; the cleaner repairs).
        after_commit=WakeBatcher(schedule).add,
    )
    hubspot = HubSpotClient(settings, bucket, metrics)
    tokens = TokenStore(settings, TokenCipher(settings.token_keys), metrics)
    return Services(
        settings=settings,
        redis=connection,
        metrics=metrics,
        schedule=schedule,
        hubspot=hubspot,
        tokens=tokens,
        zones=PortalZones(settings, hubspot, tokens),
        admission=admission,
    )


def services_of(app: Flask) -> Services:
    """The services `create_app` built for `app`."""
    return app.extensions[EXTENSION_KEY]


def current_services() -> Services:
    """The current app's services: for the app's own views and commands (ops/), never for
    domain code, which takes its services as arguments."""
    return services_of(current_app)
