"""The release job records in RQ: one per queue, `release-<queue id>`, on the `releases` queue,
JSON-serialized (job_format.py). The release clock (schedule.py) asks for a queue's job here; a
record that still holds the id is replaced when its job ended, when its running job is known
dead (its watch fell due) or stale (no heartbeat for longer than any step), or when a worker
that died took it off the queue's list and never started it. A job still queued or running
keeps its record, and the clock retries shortly.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import redis
from rq.exceptions import DuplicateJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from throttle_app.config import STALE_JOB_MIN_SECONDS, Settings
from throttle_app.release.job_format import JsonJob, JsonQueue

log = logging.getLogger(__name__)

RELEASES_QUEUE = "releases"
# The release job, named once: jobs.py imports the schedule, so the function is referenced by
# its dotted path (tests/release/test_job_format.py runs one through a real worker).
RELEASE_JOB = "throttle_app.release.jobs.release"
# A QUEUED release job that no queue list holds was taken by a worker that died before starting
# it (or is starting it this instant): it is orphaned once it stays so for ORPHAN_GRACE_MS.
ORPHAN_KEY = "throttle:{wakeups}:orphan:%s"  # set when first seen outside every queue list
ORPHAN_GRACE_MS = 2000
ORPHAN_MARK_MS = 60_000


class ReleaseJobs:
    """The queues' release job records, on one Redis connection."""

    def __init__(
        self,
        connection: redis.Redis,
        job_timeout: int = Settings.job_timeout_seconds,
        stale_after: float = STALE_JOB_MIN_SECONDS,
    ) -> None:
        """`stale_after`: a STARTED job whose heartbeat is older than this belonged to a worker
        that was killed, and its queue gets a new job. A running release job heartbeats before
        every HubSpot call and token refresh (releaser.py); Settings.stale_job_seconds is
        longer than any one such step."""
        self.connection = connection
        self.job_timeout = job_timeout
        self.stale_after = stale_after
        self.queue = JsonQueue(RELEASES_QUEUE, connection=connection)  # JSON jobs, never pickle

    def enqueue(self, queue_id: int, replace: bool = False) -> bool:
        """Enqueue the queue's release job; False when its job is still queued or running
        (`replace`: a running job is known dead, its watch fell due: replace it)."""
        job_id = f"release-{queue_id}"
        for _ in range(2):
            try:
                self.queue.enqueue(
                    RELEASE_JOB,
                    queue_id,
                    job_id=job_id,
                    unique=True,
                    result_ttl=1,  # 0 trips an RQ 2.12 bug (status read after the delete)
                    failure_ttl=3600,
                    job_timeout=self.job_timeout,
                    description=f"release queue {queue_id}",
                )
                self.connection.delete(ORPHAN_KEY % job_id)  # a new job: no old suspicion
                return True
            except DuplicateJobError:
                if not self._clear_finished(job_id, replace):
                    return False
        return False

    def _orphaned(self, job_id: str) -> bool:
        """True once `job_id` has been outside the releases queue's list for ORPHAN_GRACE_MS
        (Redis clock: the first look marks it, a later one compares)."""
        key = ORPHAN_KEY % job_id
        if self.connection.lpos(self.queue.key, job_id) is not None:
            self.connection.delete(key)
            return False
        if self.connection.set(key, "1", nx=True, px=ORPHAN_MARK_MS):
            return False
        left = self.connection.pttl(key)
        return left >= 0 and ORPHAN_MARK_MS - left >= ORPHAN_GRACE_MS

    def _clear_finished(self, job_id: str, replace: bool = False) -> bool:
        """Drop a finished/failed job record that still holds the id, or a running one that is
        stale or to be replaced; True when one was dropped."""
        try:
            job = JsonJob.fetch(job_id, connection=self.connection)
            status = job.get_status(refresh=False)
        except (NoSuchJobError, InvalidJobOperation):
            self.connection.delete(Job.key_for(job_id))  # a half-written record: drop it
            return True
        if status == JobStatus.QUEUED and self._orphaned(job_id):
            log.warning(
                "release job %s was taken off its queue and never started; replacing it", job_id
            )
            self.connection.lrem(self.queue.intermediate_queue_key, 0, job_id)
            self._drop(job)
            return True
        if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
            return False
        if status == JobStatus.STARTED:
            if not (replace or _stale(job, self.stale_after)):
                return False
            log.warning(
                "release job %s looks dead (no renewal or heartbeat in time); replacing it", job_id
            )
        else:
            log.info("release job %s ended as %s; replacing it", job_id, status)
        self._drop(job)
        return True

    def _drop(self, job: Job) -> None:
        """Delete a job's record. A finished job's record expires by itself (result_ttl), and
        RQ's delete reads the status again: one that expired in between is gone already."""
        try:
            job.delete()
        except (NoSuchJobError, InvalidJobOperation):
            self.connection.delete(job.key)


def _stale(job: Job, stale_after: float) -> bool:
    beat = job.last_heartbeat or job.started_at
    if beat is None:
        return False
    if beat.tzinfo is None:
        beat = beat.replace(tzinfo=UTC)
    return (datetime.now(UTC) - beat).total_seconds() > stale_after
