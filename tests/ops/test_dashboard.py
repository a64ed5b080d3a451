"""rq-dashboard at /rq: basic auth in front of everything, delete and empty disabled, mounted only
when a password is configured (real Redis; the app's test client)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue
from rq.job import Job

from throttle_app.ops.dashboard import init_dashboard

USER = "operator"
PASSWORD = "correct horse battery staple"


def mounted(app: Flask) -> Flask:
    """The app with the dashboard, whether or not create_app already mounts it."""
    if "rq_dashboard" not in app.blueprints:
        init_dashboard(app, app.config["THROTTLE_SETTINGS"])
    return app


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


GOOD = basic(USER, PASSWORD)


@pytest.fixture
def dashboard_app(make_app: Callable[..., Flask]) -> Flask:
    return mounted(make_app(dashboard_username=USER, dashboard_password=PASSWORD))


@pytest.fixture
def dash(dashboard_app: Flask) -> FlaskClient:
    return dashboard_app.test_client()


@pytest.fixture
def queued_job(redis_conn: redis.Redis) -> Job:
    """A job waiting on the maintenance queue (no worker runs in these tests)."""
    queue = Queue("maintenance", connection=redis_conn)
    return queue.enqueue("throttle_app.release.jobs.clean", job_id="dashboard-test-job")


def test_without_credentials_is_401_with_a_basic_challenge(dash: FlaskClient) -> None:
    for path in ("/rq/", "/rq/0/data/queues.json", "/rq/static/css/main.css", "/rq"):
        response = dash.get(path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic "), path
        assert response.get_json() == {"error": "authentication required"}


@pytest.mark.parametrize(
    "headers",
    [
        basic(USER, "wrong password"),
        basic("admin", PASSWORD),
        basic(USER, PASSWORD + "x"),
        basic(USER, ""),
        {"Authorization": "Bearer " + PASSWORD},
        {"Authorization": "Basic not-base64!"},
    ],
    ids=["wrong-password", "wrong-user", "longer-password", "empty-password", "bearer", "garbage"],
)
def test_wrong_credentials_are_401(dash: FlaskClient, headers: dict[str, str]) -> None:
    response = dash.get("/rq/", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_right_credentials_show_the_dashboard(dash: FlaskClient, queued_job: Job) -> None:
    page = dash.get("/rq/", headers=GOOD)
    assert page.status_code == 200
    assert b"<title>RQ dashboard</title>" in page.data
    assert page.headers["Cache-Control"] == "no-store"
    queues = dash.get("/rq/0/data/queues.json", headers=GOOD)
    assert queues.status_code == 200
    counts = {q["name"]: q["count"] for q in queues.get_json()["queues"]}
    assert counts["maintenance"] == 1
    job = dash.get(f"/rq/0/data/job/{queued_job.id}.json", headers=GOOD)
    assert job.status_code == 200
    assert job.get_json()["id"] == queued_job.id


def test_the_rest_of_the_app_needs_no_dashboard_credentials(dash: FlaskClient) -> None:
    assert dash.get("/api/live").status_code == 200


def test_no_password_configured_means_no_dashboard(make_app: Callable[..., Flask]) -> None:
    app = make_app(dashboard_password=None)
    assert init_dashboard(app, app.config["THROTTLE_SETTINGS"]) is False
    assert "rq_dashboard" not in app.blueprints
    client = app.test_client()
    for headers in ({}, basic("admin", "")):
        assert client.get("/rq/", headers=headers).status_code == 404
        assert client.get("/rq/0/data/queues.json", headers=headers).status_code == 404


def test_delete_and_empty_are_disabled(
    dash: FlaskClient, queued_job: Job, redis_conn: redis.Redis
) -> None:
    delete = dash.post(f"/rq/job/{queued_job.id}/delete", headers=GOOD)
    assert delete.status_code == 200
    assert delete.get_json() == {"status": "DISABLED"}
    for registry in ("queued", "failed", "started", "finished", "scheduled", "deferred"):
        empty = dash.post(f"/rq/queue/maintenance/{registry}/empty", headers=GOOD)
        assert empty.get_json() == {"status": "DISABLED"}, registry
    assert Job.exists(queued_job.id, connection=redis_conn)
    assert Queue("maintenance", connection=redis_conn).job_ids == [queued_job.id]
    # The pages don't offer the buttons either.
    jobs_page = dash.get("/rq/0/view/jobs/maintenance/queued/8/asc/1", headers=GOOD)
    assert jobs_page.status_code == 200
    assert b'id="empty-btn"' not in jobs_page.data
    job_page = dash.get(f"/rq/0/view/job/{queued_job.id}", headers=GOOD)
    assert job_page.status_code == 200
    assert b'id="delete-job-btn"' not in job_page.data


def test_actions_need_credentials_too(dash: FlaskClient, queued_job: Job) -> None:
    for path in (f"/rq/job/{queued_job.id}/requeue", "/rq/requeue/maintenance"):
        assert dash.post(path).status_code == 401


def test_cross_origin_actions_are_refused(dash: FlaskClient) -> None:
    evil = {**GOOD, "Origin": "https://evil.example"}
    assert dash.post("/rq/requeue/maintenance", headers=evil).status_code == 403
    referer = {**GOOD, "Referer": "https://evil.example/page"}
    assert dash.post("/rq/queue/maintenance/compact", headers=referer).status_code == 403
    opaque = {**GOOD, "Origin": "null"}
    assert dash.post("/rq/requeue/maintenance", headers=opaque).status_code == 403
    own = {**GOOD, "Origin": "http://localhost"}
    answer = dash.post("/rq/requeue/maintenance", headers=own)
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "OK", "count": 0}
    assert dash.post("/rq/requeue/maintenance", headers=GOOD).status_code == 200  # no Origin


def test_requeue_all_refuses_get(dash: FlaskClient) -> None:
    """rq-dashboard routes "requeue all" for GET too: a link or <img> could trigger it."""
    answer = dash.get("/rq/requeue/maintenance", headers=GOOD)
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "POST"


def test_two_apps_in_one_process_are_both_guarded(make_app: Callable[..., Flask]) -> None:
    """The guard is app-level: a second create_app() must not fail or lose it."""
    first = mounted(make_app(dashboard_username=USER, dashboard_password=PASSWORD))
    second = mounted(make_app(dashboard_username="other", dashboard_password="other-password"))
    assert first.test_client().get("/rq/").status_code == 401
    assert second.test_client().get("/rq/").status_code == 401
    assert first.test_client().get("/rq/", headers=GOOD).status_code == 200
    assert second.test_client().get("/rq/", headers=GOOD).status_code == 401
    other = basic("other", "other-password")
    assert second.test_client().get("/rq/", headers=other).status_code == 200
