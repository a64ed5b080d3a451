"""The one format of this service's RQ jobs in Redis: JSON, never pickle.

RQ stores a job's call (function path, arguments), its meta and its result with a serializer,
pickle unless told otherwise, and loads them again in whatever process reads the job: a worker
running it, rq-scheduler moving it, rq-dashboard showing it. With pickle, anyone who can write
to Redis runs code in those processes. So every enqueuer (release/schedule.py, the scheduler's
periodic jobs), every worker (workers/worker.py) and the dashboard (ops/dashboard.py) use
JOB_SERIALIZER, through these classes where a library takes a class instead of a serializer.
A job whose stored payload is not JSON fails to load (the worker records the job as failed);
nothing in it runs.

Jobs take only ints and strings (a queue id) and return JSON values (ints, strings, dicts of
them): tests/release/test_job_format.py round-trips each one.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

JOB_SERIALIZER = JSONSerializer


class JsonJob(Job):
    """An RQ job that saves and loads with JOB_SERIALIZER unless given another serializer:
    rq-scheduler builds and fetches jobs through `job_class` only, and rq-dashboard fetches
    some jobs without passing its configured serializer."""

    def __init__(
        self, id: str | None = None, connection: Redis | None = None, serializer: Any = None
    ) -> None:
        super().__init__(id, connection=connection, serializer=serializer or JOB_SERIALIZER)


class JsonQueue(Queue):
    """An RQ queue whose jobs are JsonJobs saved with JOB_SERIALIZER."""

    job_class = JsonJob

    def __init__(self, name: str = "default", **kwargs: Any) -> None:
        kwargs["serializer"] = kwargs.get("serializer") or JOB_SERIALIZER
        super().__init__(name, **kwargs)
