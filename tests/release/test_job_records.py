"""Release job records on the real Redis: a running job's record is kept while its heartbeat is
younger than the longest step a live job can take, and replaced once it is older."""

from __future__ import annotations

from tests.conftest import service_env
from tests.support.release_helpers import started_job
from throttle_app.config import Settings
from throttle_app.release.schedule import ReleaseSchedule


def test_a_job_inside_a_long_token_refresh_is_not_replaced(redis_conn):
    settings = Settings.from_env(service_env())
    schedule = ReleaseSchedule(redis_conn, stale_after=settings.stale_job_seconds)
    started_job(schedule, 7, beat_age=40)  # a refresh with retries may take this long
    assert schedule.jobs.enqueue(7) is False


def test_a_job_silent_for_longer_than_any_step_is_replaced(redis_conn):
    settings = Settings.from_env(service_env())
    schedule = ReleaseSchedule(redis_conn, stale_after=settings.stale_job_seconds)
    started_job(schedule, 7, beat_age=settings.stale_job_seconds + 5)
    assert schedule.jobs.enqueue(7) is True
