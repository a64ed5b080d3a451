"""Release jobs on the real Redis: a running job is replaced only when its heartbeat is older
than the longest step a live job can take between two heartbeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rq.job import Job, JobStatus

from tests.conftest import service_env
from throttle_app.config import Settings
from throttle_app.release.job_format import JsonJob
from throttle_app.release.schedule import ReleaseSchedule


def started_job(schedule: ReleaseSchedule, queue_id: int, beat_age: float) -> Job:
    """The queue's release job, marked running with a heartbeat `beat_age` seconds old."""
    assert schedule._enqueue(queue_id)
    job = JsonJob.fetch(f"release-{queue_id}", connection=schedule.connection)
    job.set_status(JobStatus.STARTED)
    job.heartbeat(datetime.now(UTC) - timedelta(seconds=beat_age), ttl=600)
    return job


def test_a_job_inside_a_long_token_refresh_is_not_replaced(redis_conn):
    settings = Settings.from_env(service_env())
    schedule = ReleaseSchedule(redis_conn, stale_after=settings.stale_job_seconds)
    started_job(schedule, 7, beat_age=40)  # a refresh with retries may take this long
    assert schedule._enqueue(7) is False


def test_a_job_silent_for_longer_than_any_step_is_replaced(redis_conn):
    settings = Settings.from_env(service_env())
    schedule = ReleaseSchedule(redis_conn, stale_after=settings.stale_job_seconds)
    started_job(schedule, 7, beat_age=settings.stale_job_seconds + 5)
    assert schedule._enqueue(7) is True


def test_a_queue_pause_is_never_shortened(redis_conn):
    schedule = ReleaseSchedule(redis_conn)
    schedule.pause(3, 60)
    schedule.pause(3, 1)
    assert 59 < schedule.paused_for(3) <= 60
    assert schedule.paused_for(4) == 0.0
    assert [schedule.failure_streak(3) for _ in range(3)] == [1, 2, 3]
    schedule.succeeded(3)
    assert schedule.failure_streak(3) == 1
