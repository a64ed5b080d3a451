"""`scripts/entrypoint.sh worker [queue ...]`: an RQ worker (not gevent-patched).

Serves the named queues (default: every queue), with RQ's delayed-job scheduler, and, when it
serves `releases`, a release clock child process. SIGTERM (a rolling restart): RQ's warm
shutdown lets the current job return, and a release job returns at its next step (before its
next claim or HubSpot call, after the call in flight), giving back the rows it claimed and has
not sent, and scheduling its queue for another worker. The longest step is one token refresh
(Settings.token_refresh_budget_seconds, ~50 s with the defaults) or one HubSpot call
(Settings.call_budget_seconds, 16 s); the chart's grace period covers it.

It is RQ's SimpleWorker: jobs run in the worker process instead of a forked horse. Release jobs
are short and frequent ("50 per second" windows), and a horse plus a new database connection
per job cost the rate measurably (docs/measurements.md). Job timeouts still apply (SIGALRM in
the worker process); a crash takes the worker down, and its supervisor restarts it.

The worker bootstrap: it builds the app and its services once (create_app) and binds them to
the jobs before the first one runs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from contextlib import suppress

import redis
from rq import SimpleWorker, worker_registration

from throttle_app import create_app
from throttle_app.release import jobs
from throttle_app.release.clock import run_clock
from throttle_app.release.job_format import JOB_SERIALIZER, JsonJob, JsonQueue
from throttle_app.release.schedule import ALL_QUEUES, RELEASES_QUEUE
from throttle_app.services import services_of
from workers.outage import keep_running

log = logging.getLogger(__name__)
WORKER_TTL_SECONDS = 60


class ReleaseWorker(SimpleWorker):
    """RQ's SimpleWorker whose warm shutdown also tells a running release job to stop, and
    whose last words to Redis are best-effort: when Redis is away, the worker's key expires by
    itself (worker_ttl), and the teardown still stops the pubsub thread."""

    stop_requested = False

    def handle_warm_shutdown_request(self) -> None:
        self.stop_requested = True
        jobs.request_stop()
        super().handle_warm_shutdown_request()

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        """RQ's heartbeat, plus: a worker whose registration Redis lost (a restart without
        persistence, a wipe) registers again, so the liveness probe and rq-dashboard see it.
        One round trip, as before."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        with self.connection.pipeline(transaction=False) as batch:
            super().heartbeat(timeout, batch)
            batch.sismember(worker_registration.REDIS_WORKER_KEYS, self.key)
            registered = batch.execute()[-1]
        if not registered:
            log.warning("worker %s: Redis lost its registration; registering again", self.name)
            with self.connection.pipeline() as batch:
                batch.hset(self.key, mapping=self.serialize())
                worker_registration.register(self, batch)
                batch.expire(self.key, timeout or self.worker_ttl + 60)
                batch.execute()

    def register_death(self) -> None:
        try:
            super().register_death()
        except redis.RedisError as exc:
            log.warning("worker %s: could not register its death: %s", self.name, exc)

    def unsubscribe(self) -> None:
        try:
            super().unsubscribe()
        except redis.RedisError:
            if self.pubsub_thread:
                self.pubsub_thread.stop()
                with suppress(redis.RedisError):
                    self.pubsub.close()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str]) -> None:
    names = argv or list(ALL_QUEUES)
    unknown = sorted(set(names) - set(ALL_QUEUES))
    if unknown:
        sys.exit(f"worker: unknown queue(s) {', '.join(unknown)}; known: {', '.join(ALL_QUEUES)}")
    app = create_app()  # reads and checks every setting; the release clock child inherits it
    services = services_of(app)
    jobs.bind(app, services)
    settings = services.settings
    connection = redis.Redis.from_url(settings.redis_url)
    clock = None
    if RELEASES_QUEUE in names:
        clock = multiprocessing.get_context("fork").Process(
            target=run_clock,
            args=(
                settings.redis_url,
                settings.job_timeout_seconds,
                os.getpid(),
                settings.stale_job_seconds,
            ),
            name="release-clock",
            daemon=True,
        )
        clock.start()

    def work() -> bool:
        """One RQ worker until it stops; True when it stopped on request (SIGTERM)."""
        worker = ReleaseWorker(
            [JsonQueue(name, connection=connection) for name in names],
            connection=connection,
            serializer=JOB_SERIALIZER,  # loads no pickle: a planted payload fails, nothing runs
            job_class=JsonJob,
            worker_ttl=WORKER_TTL_SECONDS,  # heartbeats this often: the liveness probe reads them
        )
        try:
            worker.work(with_scheduler=True, logging_level=settings.log_level)
        except redis.RedisError:
            if worker.stop_requested:
                return True
            raise
        finally:  # until the next loop installs RQ's handlers: SIGTERM ends the process
            signal.signal(signal.SIGTERM, _exit_on_signal)
            signal.signal(signal.SIGINT, _exit_on_signal)
        return worker.stop_requested

    try:
        keep_running(work, "worker")  # a Redis outage restarts the loop, not the process
    finally:
        if clock is not None:
            clock.terminate()
            clock.join(5)


if __name__ == "__main__":
    main(sys.argv[1:])
