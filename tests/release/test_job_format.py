"""RQ jobs are JSON in Redis (release/job_format.py): every job the service enqueues round-trips
through a JSON worker, and a pickle planted in Redis is never loaded, so no code in it runs."""

from __future__ import annotations

import json
import signal
import time
import zlib
from datetime import datetime
from pathlib import Path

import pytest
import redis
from flask import Flask
from rq import SimpleWorker
from rq.job import JobStatus
from rq_scheduler import Scheduler

from fake_hubspot import FakeHubSpot
from tests.conftest import service_env
from tests.support.planted_jobs import RunsOnLoad, payload_runs_code, plant_pickled_job
from tests.support.processes import kill_group, start_role
from tests.support.release_helpers import backlog
from throttle_app.config import Settings
from throttle_app.release import jobs
from throttle_app.release.job_format import JOB_SERIALIZER, JsonJob, JsonQueue
from throttle_app.release.job_records import RELEASE_JOB
from throttle_app.release.schedule import MAINTENANCE_QUEUE, RELEASES_QUEUE
from throttle_app.services import services_of
from workers.scheduler import PREFIX, build_scheduler, periodic_jobs


def stored_call(connection: redis.Redis, job_id: str) -> list:
    """A job's call as stored in Redis, decoded as JSON (fails on anything else)."""
    data = connection.hget(JsonJob.key_for(job_id), "data")
    return json.loads(zlib.decompress(data))


def run_burst(app: Flask, connection: redis.Redis, monkeypatch, *names: str) -> None:
    """Run the queued jobs the way workers/worker.py does (JSON queues, JSON serializer)."""
    monkeypatch.setattr(jobs, "_bound", (app, services_of(app)))
    worker = SimpleWorker(
        [JsonQueue(name, connection=connection) for name in names],
        connection=connection,
        serializer=JOB_SERIALIZER,
        job_class=JsonJob,
    )
    worker.work(burst=True)


def test_a_release_job_round_trips_as_json(
    installed: Flask, fake: FakeHubSpot, redis_conn: redis.Redis, monkeypatch
) -> None:
    queue_id = backlog(installed, 3, max_throughput=10, period_seconds=60)
    schedule = services_of(installed).schedule
    assert schedule.jobs.enqueue(queue_id)
    job_id = f"release-{queue_id}"
    assert stored_call(redis_conn, job_id) == [RELEASE_JOB, None, [queue_id], {}]
    run_burst(installed, redis_conn, monkeypatch, RELEASES_QUEUE)
    job = JsonJob.fetch(job_id, connection=redis_conn)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value()["completed"] == 3
    assert len(fake.completions()) == 3


def test_the_periodic_clean_and_purge_jobs_round_trip_as_json(
    installed: Flask, redis_conn: redis.Redis, monkeypatch
) -> None:
    settings = Settings.from_env(service_env())
    scheduler = build_scheduler(settings, redis_conn)
    scheduler.enqueue_jobs()  # registers both periodic jobs, due now, and moves them to the queue
    periodic = {job.job_id: job for job in periodic_jobs(settings)}
    queued = JsonQueue(MAINTENANCE_QUEUE, connection=redis_conn).job_ids
    assert sorted(queued) == sorted(periodic)
    for job_id, job in periodic.items():
        assert stored_call(redis_conn, job_id) == [job.func, None, [], {}]
    run_burst(installed, redis_conn, monkeypatch, MAINTENANCE_QUEUE)
    results = {}
    for job_id, job in periodic.items():
        done = JsonJob.fetch(job_id, connection=redis_conn)
        assert done.get_status() == JobStatus.FINISHED, job.func
        results[job.func.rsplit(".", 1)[1]] = done.return_value()
    # The installed portal's zone was never asked (it was stored without the callback).
    assert results["clean"] == {
        "reclaimed": 0,
        "expired": 0,
        "woken": 0,
        "at_risk": 0,
        "time_zones_asked": 1,
    }
    assert results["purge"] == {"executions": 0, "queues": 0}


def test_a_pickled_periodic_job_from_an_older_release_is_replaced(
    redis_conn: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    old = Scheduler(connection=redis_conn)  # rq-scheduler's default: pickle
    old.schedule(
        scheduled_time=datetime(2000, 1, 1),  # long due
        func="throttle_app.release.jobs.clean",
        args=(RunsOnLoad(marker),),
        interval=60,
        id=PREFIX + "0123456789abcdef",
    )
    settings = Settings.from_env(service_env())
    build_scheduler(settings, redis_conn).enqueue_jobs()
    scheduled = {m.decode() for m in redis_conn.zrange(Scheduler.scheduled_jobs_key, 0, -1)}
    assert scheduled == {job.job_id for job in periodic_jobs(settings)}
    assert not marker.exists()


def test_a_json_worker_never_runs_a_planted_pickle(
    installed: Flask, redis_conn: redis.Redis, tmp_path: Path, monkeypatch
) -> None:
    marker = tmp_path / "code-ran"
    plant_pickled_job(redis_conn, MAINTENANCE_QUEUE, "planted", marker)
    assert payload_runs_code(redis_conn, "planted", marker)  # the control: pickle runs it
    run_burst(installed, redis_conn, monkeypatch, MAINTENANCE_QUEUE)
    assert not marker.exists()
    failed = JsonQueue(MAINTENANCE_QUEUE, connection=redis_conn).failed_job_registry
    assert failed.get_job_ids() == ["planted"]


@pytest.mark.slow
def test_the_worker_role_never_runs_a_planted_pickle(
    installed: Flask, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    """workers/worker.py itself: a pickled job on each queue fails; no code runs; the worker
    lives on and runs the next (JSON) job."""
    marker = tmp_path / "code-ran"
    for name in (RELEASES_QUEUE, MAINTENANCE_QUEUE):
        plant_pickled_job(redis_conn, name, f"planted-{name}", marker)
    worker = start_role("worker", service_env(), log_path=tmp_path / "worker.log")
    try:
        failed = {
            name: JsonQueue(name, connection=redis_conn).failed_job_registry
            for name in (RELEASES_QUEUE, MAINTENANCE_QUEUE)
        }
        deadline = time.monotonic() + 60
        while sum(r.count for r in failed.values()) < 2 and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        assert {n: r.get_job_ids() for n, r in failed.items()} == {
            n: [f"planted-{n}"] for n in failed
        }, (tmp_path / "worker.log").read_text()
        assert not marker.exists()
        follow_up = JsonQueue(MAINTENANCE_QUEUE, connection=redis_conn).enqueue(
            jobs.job_path(jobs.purge), job_id="after-the-planted-ones"
        )
        deadline = time.monotonic() + 30
        while follow_up.get_status(refresh=True) != JobStatus.FINISHED:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        assert worker.poll() is None
    finally:
        kill_group(worker, signal.SIGTERM, timeout=30)
