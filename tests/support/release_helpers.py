"""Helpers for release-engine tests: a portal installed against the fake HubSpot, executions
admitted through the real endpoint, and the fake's completions read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask
from rq.job import Job, JobStatus
from sqlalchemy import text

from fake_hubspot import FakeHubSpot
from tests.support.hubspot_requests import execution_payload, post_execution
from throttle_app.extensions import db
from throttle_app.hubspot.oauth_api import TokenGrant, TokenInfo
from throttle_app.release.job_format import JsonJob
from throttle_app.release.schedule import ReleaseSchedule
from throttle_app.services import services_of

PORTAL = 50467010


def install_portal(
    app: Flask,
    fake: FakeHubSpot,
    portal_id: int = PORTAL,
    scopes: tuple[str, ...] = ("automation", "oauth"),
) -> str:
    """Issue tokens at the fake and store them as an install would; return the access token.
    Without the `automation` scope the fake answers callback calls with 403."""
    issued = fake.issue_tokens(portal_id, scopes)
    grant = TokenGrant(
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_in=int(issued["expires_in"]),
        issued_at=datetime.now(UTC),
        hub_id=portal_id,
    )
    info = TokenInfo(
        hub_id=portal_id,
        hub_domain=f"portal-{portal_id}.example.com",
        user="admin@example.com",
        scopes=scopes,
        app_id=4242424,
        client_id=fake.client_id,
    )
    with app.app_context():
        services_of(app).tokens.store_install(grant, info)
    return issued["access_token"]


def admit(
    app: Flask,
    count: int,
    prefix: str = "cb",
    rate: tuple[str, str, str] = ("5", "1", "minutes"),
) -> list[str]:
    client = app.test_client()
    ids = [f"{prefix}-{n}" for n in range(count)]
    max_value, time_value, period = rate
    for callback_id in ids:
        payload = execution_payload(
            callback_id=callback_id,
            portal_id=PORTAL,
            workflow_id=1,
            max_throughput=max_value,
            time_value=time_value,
            period=period,
        )
        assert post_execution(client, payload).status_code == 200
    return ids


def states(app: Flask) -> dict[str, int]:
    with app.app_context():
        rows = db.session.execute(
            text("SELECT state, count(*) FROM action_executions GROUP BY state")
        ).all()
        db.session.remove()
    return {state: count for state, count in rows}


def query(app: Flask, sql: str, **params):
    with app.app_context():
        result = db.session.execute(text(sql), params)
        rows = result.all() if result.returns_rows else []
        db.session.commit()
        db.session.remove()
    return rows


def queue_id(app: Flask) -> int:
    return query(app, "SELECT id FROM throttle_queues ORDER BY id LIMIT 1")[0][0]


def backlog(app: Flask, count: int, max_throughput: int, period_seconds: int, name: str = "b"):
    """A queue (`name`) with `count` pending executions, written straight to PostgreSQL (fast
    setup for release tests; admission has its own tests). Returns the queue id."""
    with app.app_context():
        queue = db.session.execute(
            text(
                "INSERT INTO throttle_queues (queue_key, portal_id, workflow_id, action_id,"
                " max_throughput, period_seconds) VALUES (:key, :portal, 9, '1', :n, :t)"
                " RETURNING id"
            ),
            {
                "key": f"{PORTAL}:9:{name}",
                "portal": PORTAL,
                "n": max_throughput,
                "t": period_seconds,
            },
        ).scalar_one()
        db.session.execute(
            text(
                "INSERT INTO action_executions (callback_id, queue_id, portal_id, workflow_id,"
                " action_id, max_throughput, period_seconds, hold_expires_at)"
                " SELECT :prefix || '-' || n, :queue, :portal, 9, '1', :n, :t,"
                " now() + interval '7 days' FROM generate_series(0, :count - 1) AS n"
            ),
            {
                "prefix": name,
                "queue": queue,
                "portal": PORTAL,
                "n": max_throughput,
                "t": period_seconds,
                "count": count,
            },
        )
        db.session.commit()
        db.session.remove()
    return queue


def started_job(schedule: ReleaseSchedule, queue_id: int, beat_age: float) -> Job:
    """The queue's release job, marked running with a heartbeat `beat_age` seconds old."""
    assert schedule.jobs.enqueue(queue_id)
    job = JsonJob.fetch(f"release-{queue_id}", connection=schedule.connection)
    job.set_status(JobStatus.STARTED)
    job.heartbeat(datetime.now(UTC) - timedelta(seconds=beat_age), ttl=600)
    return job
