"""RQ jobs written to Redis with pickle, as an attacker with Redis access (or a release that
still pickled its jobs) would write them: loading any of their pickled fields runs code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import redis
from rq import Queue
from rq.job import Job
from rq.serializers import PickleSerializer


class RunsOnLoad:
    """Unpickling this calls os.mkdir(marker): the marker directory proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def plant_pickled_job(connection: redis.Redis, queue: str, job_id: str, marker: Path) -> Job:
    """Queue a job whose call, meta and result are pickles that create `marker` when loaded."""
    job = Job.create(
        "throttle_app.release.jobs.clean",
        args=(RunsOnLoad(marker),),
        connection=connection,
        serializer=PickleSerializer,
        id=job_id,
        meta={"planted": RunsOnLoad(marker)},
    )
    Queue(queue, connection=connection, serializer=PickleSerializer).enqueue_job(job)
    connection.hset(job.key, "result", pickle.dumps(RunsOnLoad(marker)))
    return job


def payload_runs_code(connection: redis.Redis, job_id: str, marker: Path) -> bool:
    """The control: the planted call really runs code once unpickled (then cleans up)."""
    Job.fetch(job_id, connection=connection, serializer=PickleSerializer)  # loads its result
    ran = marker.is_dir()
    if ran:
        marker.rmdir()
    return ran
