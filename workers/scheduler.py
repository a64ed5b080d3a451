"""`scripts/entrypoint.sh scheduler`: rq-scheduler running the periodic maintenance jobs.

The periodic jobs are registered idempotently: each job id is derived from its definition, so a
restart, or two schedulers starting together, never duplicates one (rq-scheduler's own lock
keeps a second scheduler from enqueueing twice). Definitions that no longer exist are removed.
SIGTERM stops the loop (rq-scheduler installs the handler).
"""

from __future__ import annotations

import hashlib
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from rq_scheduler import Scheduler

from throttle_app.config import Settings
from throttle_app.release import jobs
from throttle_app.release.job_format import JsonJob, JsonQueue
from throttle_app.release.schedule import MAINTENANCE_QUEUE
from workers.healthcheck import scheduler_instance_name
from workers.outage import keep_running

log = logging.getLogger(__name__)
PREFIX = "throttle-periodic-"
POLL_SECONDS = 1
REREGISTER_EVERY_POLLS = 10


@dataclass(frozen=True)
class Periodic:
    func: str
    interval_seconds: int
    timeout_seconds: int

    @property
    def job_id(self) -> str:
        """Derived from the definition and the job format: a periodic job saved by a release
        that pickled its jobs has another id, so `register` cancels it and saves a JSON one."""
        definition = f"{self.func}|{self.interval_seconds}|{self.timeout_seconds}|json"
        return PREFIX + hashlib.sha256(definition.encode()).hexdigest()[:16]


def periodic_jobs(settings: Settings) -> list[Periodic]:
    return [
        Periodic(jobs.job_path(jobs.clean), settings.cleaner_interval_seconds, 300),
        Periodic(jobs.job_path(jobs.purge), 86_400, 3_600),
    ]


def register(scheduler: Scheduler, jobs: list[Periodic]) -> list[str]:
    """Schedule the periodic jobs that are missing, cancel stale ones; return the job ids."""
    wanted = {job.job_id: job for job in jobs}
    for existing in scheduler.get_jobs():
        if existing.id.startswith(PREFIX) and existing.id not in wanted:
            log.info("scheduler: removing stale periodic job %s", existing.id)
            scheduler.cancel(existing)
    for job_id, job in wanted.items():
        if job_id in scheduler:
            continue
        scheduler.schedule(
            scheduled_time=datetime.now(UTC).replace(tzinfo=None),
            func=job.func,
            interval=job.interval_seconds,
            repeat=None,
            id=job_id,
            result_ttl=job.interval_seconds * 2,
            timeout=job.timeout_seconds,
            queue_name=MAINTENANCE_QUEUE,
        )
        log.info("scheduler: registered %s every %ss as %s", job.func, job.interval_seconds, job_id)
    return sorted(wanted)


class ThrottleScheduler(Scheduler):
    """rq-scheduler that re-checks its periodic jobs now and then, so they come back by
    themselves after Redis lost everything (a restart without persistence, a FLUSHALL)."""

    def __init__(self, *args, periodic: list[Periodic], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._periodic = periodic
        self._polls = 0

    def register_death(self) -> None:
        """Best-effort: when Redis is away, the key expires by itself (heartbeat TTL)."""
        try:
            super().register_death()
        except redis.RedisError as exc:
            log.warning("scheduler %s: could not register its death: %s", self.name, exc)

    def remove_lock(self) -> None:
        """Best-effort: the lock expires by itself a few seconds after the last poll."""
        try:
            super().remove_lock()
        except redis.RedisError as exc:
            log.warning("scheduler %s: could not remove its lock: %s", self.name, exc)

    def enqueue_jobs(self):
        if self._polls % REREGISTER_EVERY_POLLS == 0:
            register(self, self._periodic)
        self._polls += 1
        return super().enqueue_jobs()


def build_scheduler(settings: Settings, connection: redis.Redis) -> ThrottleScheduler:
    """The scheduler `main` runs: JSON jobs (release/job_format.py) on the maintenance queue."""
    return ThrottleScheduler(
        queue_name=MAINTENANCE_QUEUE,
        connection=connection,
        interval=POLL_SECONDS,
        periodic=periodic_jobs(settings),
        name=scheduler_instance_name(),  # lets the liveness probe find this host's scheduler
        job_class=JsonJob,  # the periodic jobs are saved and moved as JSON, never pickle
        queue_class=JsonQueue,
    )


def main() -> None:
    settings = Settings.from_env()
    from throttle_app.telemetry.logs import configure_logging

    configure_logging(settings.log_level, secrets=settings.secrets, json_lines=settings.log_json)
    connection = redis.Redis.from_url(settings.redis_url)

    def run() -> bool:
        # registers the periodic jobs on its first poll, under rq-scheduler's lock; a fresh
        # instance (a new name) after an outage, so no stale registration is in the way
        build_scheduler(settings, connection).run()
        return True  # run() only returns in burst mode; SIGTERM raises SystemExit

    keep_running(run, "scheduler")  # a Redis outage restarts the loop, not the process


if __name__ == "__main__":
    main()
    sys.exit(0)
