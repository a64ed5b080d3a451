"""A worker SIGKILLed between taking a release job off the RQ queue (BLPOP) and marking it
started: the job's record stays QUEUED, but no queue list holds it any more, so no worker will
ever run it. The queue's release job must be enqueued again, as for any other dead worker's
job, within the issue's "a dead worker's queue resumes within 20 s".

The soak (test_soak.py) hit this state on a real SIGKILL; here it is made on purpose, with the
real ReleaseSchedule on real Redis, by popping the job as the dying worker did.
"""

from __future__ import annotations

import time

import pytest

from throttle_app.release.schedule import ReleaseSchedule

pytestmark = pytest.mark.slow

RESUME_SECONDS = 20.0
QUEUE_ID = 7


def test_a_release_job_popped_by_a_killed_worker_is_enqueued_again(redis_conn):
    schedule = ReleaseSchedule(redis_conn)
    schedule.wake([QUEUE_ID])
    schedule.promote_due()
    job_id = f"release-{QUEUE_ID}".encode()
    assert redis_conn.lrange(schedule.queue.key, 0, -1) == [job_id]
    # the worker's BLPOP took it; the worker died before it marked the job started
    assert redis_conn.lpop(schedule.queue.key) == job_id

    deadline = time.monotonic() + RESUME_SECONDS
    while time.monotonic() < deadline:
        schedule.wake([QUEUE_ID])  # the cleaner and admissions keep waking the queue
        schedule.promote_due()
        if job_id in redis_conn.lrange(schedule.queue.key, 0, -1):
            return
        time.sleep(0.25)
    status = redis_conn.hget(f"rq:job:{job_id.decode()}", "status")
    pytest.fail(f"release job not enqueued again within {RESUME_SECONDS:g}s (status {status!r})")
