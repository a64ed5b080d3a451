"""Release jobs on the real Redis: a running job is replaced when its watch fell due (it did not
renew its claim in time) or when its heartbeat is older than the longest step a live job can
take between two heartbeats."""

from __future__ import annotations

import time

from rq.job import Job, JobStatus

from tests.conftest import service_env
from tests.support.release_helpers import started_job
from throttle_app.config import Settings
from throttle_app.release import job_records
from throttle_app.release.job_format import JsonJob
from throttle_app.release.job_records import ORPHAN_GRACE_MS
from throttle_app.release.schedule import WATCH_KEY, ReleaseSchedule


def test_a_queue_pause_is_never_shortened(redis_conn):
    schedule = ReleaseSchedule(redis_conn)
    schedule.pause(3, 60)
    schedule.pause(3, 1)
    assert 59 < schedule.paused_for(3) <= 60
    assert schedule.paused_for(4) == 0.0
    assert [schedule.failure_streak(3) for _ in range(3)] == [1, 2, 3]
    schedule.succeeded(3)
    assert schedule.failure_streak(3) == 1


def test_a_job_whose_watch_fell_due_is_replaced_however_fresh_its_heartbeat(redis_conn):
    """Its worker was killed mid-claim: the queue's job is replaced when its lease ends, not
    after the stale-job limit (a killed job's last heartbeat is as fresh as its last renewal)."""
    settings = Settings.from_env(service_env())
    schedule = ReleaseSchedule(redis_conn, stale_after=settings.stale_job_seconds)
    started_job(schedule, 7, beat_age=0)
    schedule.watch(7, 0.2)
    assert 0.1 < schedule.promote_due() <= 0.21  # the clock sleeps until the watch is due
    assert Job.fetch("release-7", connection=redis_conn).get_status() == JobStatus.STARTED
    time.sleep(0.25)
    schedule.promote_due()
    assert Job.fetch("release-7", connection=redis_conn).get_status() == JobStatus.QUEUED
    assert redis_conn.zscore(WATCH_KEY, 7) is None


def test_a_job_that_renews_keeps_its_watch_and_a_finished_run_drops_it(redis_conn):
    schedule = ReleaseSchedule(redis_conn)
    started_job(schedule, 7, beat_age=0)
    schedule.watch(7, 0.2)
    schedule.watch(7, 5)  # renewed: the later promise holds
    schedule.watch(7, 0.01)  # a second job's shorter one does not shorten it
    time.sleep(0.25)
    assert 4.5 < schedule.promote_due() <= 5
    assert Job.fetch("release-7", connection=redis_conn).get_status() == JobStatus.STARTED
    schedule.unwatch(7)
    assert redis_conn.zscore(WATCH_KEY, 7) is None and schedule.promote_due() is None


def test_a_job_a_dead_worker_took_off_the_queue_is_enqueued_again(redis_conn):
    """A worker SIGKILLed between taking the job off the list and starting it leaves it QUEUED
    in no list: after the grace period the queue gets a new job instead of stalling for good."""
    schedule = ReleaseSchedule(redis_conn)
    schedule.wake([7])
    schedule.promote_due()
    job_id = b"release-7"
    assert redis_conn.lpop(schedule.queue.key) == job_id  # the dead worker's take
    schedule.wake([7])
    schedule.promote_due()  # first look: marked, not replaced (a live worker may be starting it)
    assert redis_conn.lrange(schedule.queue.key, 0, -1) == []
    time.sleep(ORPHAN_GRACE_MS / 1000 + 0.1)
    schedule.wake([7])
    schedule.promote_due()
    assert redis_conn.lrange(schedule.queue.key, 0, -1) == [job_id]


def test_a_queued_job_in_its_list_is_never_replaced(redis_conn):
    schedule = ReleaseSchedule(redis_conn)
    schedule.wake([8])
    schedule.promote_due()
    time.sleep(ORPHAN_GRACE_MS / 1000 + 0.1)
    schedule.wake([8])
    schedule.promote_due()
    assert redis_conn.lrange(schedule.queue.key, 0, -1) == [b"release-8"]


def test_a_finished_record_that_expires_while_it_is_replaced_loses_no_wake_up(
    redis_conn, monkeypatch
):
    """A finished job's record expires by itself (result_ttl 1 s), possibly between the clock's
    look at its status and its deletion: the queue still gets its new job, and so does every
    other queue due at that moment (docs/measurements.md, "End-to-end and limit tests")."""
    schedule = ReleaseSchedule(redis_conn)
    assert schedule.jobs.enqueue(7)
    assert redis_conn.lpop(schedule.queue.key) == b"release-7"  # a worker took it and ran it
    JsonJob.fetch("release-7", connection=redis_conn).set_status(JobStatus.FINISHED)
    fetch = JsonJob.fetch
    expired: list[str] = []

    def fetch_then_expire(job_id: str, connection):
        job = fetch(job_id, connection=connection)
        if not expired:
            connection.delete(job.key)  # its result_ttl runs out right now
            expired.append(job_id)
        return job

    monkeypatch.setattr(job_records.JsonJob, "fetch", fetch_then_expire)
    schedule.wake([7, 8])
    schedule.promote_due()
    assert expired == ["release-7"]
    assert sorted(redis_conn.lrange(schedule.queue.key, 0, -1)) == [b"release-7", b"release-8"]
