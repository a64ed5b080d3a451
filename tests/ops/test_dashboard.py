"""rq-dashboard: basic auth in front of everything, delete and empty disabled, jobs read as JSON;
mounted in the web app at /rq only with THROTTLE_WEB_DASHBOARD, and served alone by the
`dashboard` role from its own few settings (real Redis; the app's test client)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq.job import Job

from tests.conftest import TEST_REDIS_URL, service_env
from tests.support.planted_jobs import payload_runs_code, plant_pickled_job
from throttle_app import create_app
from throttle_app.config import ConfigError, Settings
from throttle_app.ops.dashboard import init_dashboard, standalone_app
from throttle_app.release.job_format import JsonQueue

USER = "operator"
PASSWORD = "correct horse battery staple, twice"  # 35 characters: valid outside dev mode


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


GOOD = basic(USER, PASSWORD)


@pytest.fixture
def dashboard_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(web_dashboard=True, dashboard_username=USER, dashboard_password=PASSWORD)


@pytest.fixture
def dash(dashboard_app: Flask) -> FlaskClient:
    return dashboard_app.test_client()


@pytest.fixture
def queued_job(redis_conn: redis.Redis) -> Job:
    """A job waiting on the maintenance queue (no worker runs in these tests)."""
    queue = JsonQueue("maintenance", connection=redis_conn)
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


def test_web_pods_serve_no_dashboard_unless_asked(migrated_database, redis_conn) -> None:
    """A dashboard password alone (the chart gives every pod the same Secret) mounts nothing."""
    env = service_env(THROTTLE_DASHBOARD_USERNAME=USER, THROTTLE_DASHBOARD_PASSWORD=PASSWORD)
    app = create_app(Settings.from_env(env))
    try:
        assert "rq_dashboard" not in app.blueprints
        client = app.test_client()
        for headers in ({}, GOOD):
            assert client.get("/rq/", headers=headers).status_code == 404
            assert client.get("/rq/0/data/queues.json", headers=headers).status_code == 404
    finally:
        app.extensions["throttle_services"].admission.close()


def test_the_web_dashboard_setting_mounts_it(migrated_database, redis_conn) -> None:
    env = service_env(
        THROTTLE_WEB_DASHBOARD="true",
        THROTTLE_DASHBOARD_USERNAME=USER,
        THROTTLE_DASHBOARD_PASSWORD=PASSWORD,
    )
    app = create_app(Settings.from_env(env))
    try:
        client = app.test_client()
        assert client.get("/rq/").status_code == 401
        assert client.get("/rq/", headers=GOOD).status_code == 200
    finally:
        app.extensions["throttle_services"].admission.close()


def test_no_password_means_no_dashboard_even_when_asked(make_app: Callable[..., Flask]) -> None:
    app = make_app(web_dashboard=True, dashboard_password=None)  # from_env refuses this
    assert init_dashboard(app, app.config["THROTTLE_SETTINGS"]) is False
    assert app.test_client().get("/rq/", headers=basic("admin", "")).status_code == 404


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
    assert JsonQueue("maintenance", connection=redis_conn).job_ids == [queued_job.id]
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
    first = make_app(web_dashboard=True, dashboard_username=USER, dashboard_password=PASSWORD)
    second = make_app(
        web_dashboard=True, dashboard_username="other", dashboard_password="other-password"
    )
    assert first.test_client().get("/rq/").status_code == 401
    assert second.test_client().get("/rq/").status_code == 401
    assert first.test_client().get("/rq/", headers=GOOD).status_code == 200
    assert second.test_client().get("/rq/", headers=GOOD).status_code == 401
    other = basic("other", "other-password")
    assert second.test_client().get("/rq/", headers=other).status_code == 200


# Jobs are read as JSON: a pickle planted in Redis runs nothing in the dashboard's process.


def test_a_planted_pickle_runs_nothing_in_the_dashboard(
    dash: FlaskClient, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    plant_pickled_job(redis_conn, "maintenance", "planted", marker)
    assert payload_runs_code(redis_conn, "planted", marker)  # the control: pickle runs it
    listings = (
        "/rq/0/data/queues.json",
        "/rq/0/view/jobs/maintenance/queued/8/asc/1",
        "/rq/0/data/jobs/maintenance/queued/8/asc/1.json",
        "/rq/0/data/workers.json",
        "/rq/0/view/job/planted",
    )
    for page in listings:  # they list the planted job without loading its pickles
        assert dash.get(page, headers=GOOD).status_code == 200, page
        assert not marker.exists(), f"{page} unpickled the planted job"
    # Its details cannot be read as JSON (an error answer), and nothing was unpickled.
    assert dash.get("/rq/0/data/job/planted.json", headers=GOOD).status_code == 500
    assert not marker.exists(), "the job's details unpickled the planted job"
    for action in ("/rq/job/planted/requeue", "/rq/requeue/maintenance", "/rq/job/planted/delete"):
        dash.post(action, headers=GOOD)
        assert not marker.exists(), f"{action} unpickled the planted job"


# The `dashboard` role: its own few settings, read through the settings table's rows.

ROLE_ENV = {
    "REDIS_URL": TEST_REDIS_URL,
    "THROTTLE_DASHBOARD_USERNAME": USER,
    "THROTTLE_DASHBOARD_PASSWORD": PASSWORD,
}


def test_the_role_needs_only_redis_and_its_login(redis_conn: redis.Redis) -> None:
    client = standalone_app(ROLE_ENV).test_client()  # no database, HubSpot or key settings
    assert client.get("/").status_code == 401
    queues = client.get("/0/data/queues.json", headers=GOOD)
    assert queues.status_code == 200
    assert client.post("/job/x/delete", headers=GOOD).get_json() == {"status": "DISABLED"}


def test_the_role_reads_the_redis_timeout_row(redis_conn: redis.Redis) -> None:
    app = standalone_app(ROLE_ENV | {"THROTTLE_REDIS_TIMEOUT_SECONDS": "0.7"})
    (url,) = app.config["RQ_DASHBOARD_REDIS_URL"]
    assert "socket_timeout=0.7" in url and "socket_connect_timeout=0.7" in url


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"THROTTLE_DASHBOARD_PASSWORD": ""}, "THROTTLE_DASHBOARD_PASSWORD"),
        ({"REDIS_URL": ""}, "REDIS_URL is required"),
        ({"THROTTLE_DASHBOARD_PASSWORD": "short-password"}, "at least 32 characters"),
        ({"REDIS_URL": "rediss://r:6380/0?ssl_cert_reqs=none"}, "ssl_cert_reqs"),
        ({"THROTTLE_REDIS_TIMEOUT_SECONDS": "soon"}, "THROTTLE_REDIS_TIMEOUT_SECONDS"),
    ],
    ids=["no-password", "no-redis", "short-password", "unverified-tls", "bad-timeout"],
)
def test_the_role_refuses_what_every_process_refuses(overrides, named) -> None:
    with pytest.raises(ConfigError, match=named):
        standalone_app(ROLE_ENV | overrides)


def test_the_role_accepts_a_short_password_in_development_mode(redis_conn) -> None:
    env = ROLE_ENV | {"THROTTLE_DASHBOARD_PASSWORD": "dev", "THROTTLE_DEV_MODE": "true"}
    client = standalone_app(env).test_client()
    assert client.get("/", headers=basic(USER, "dev")).status_code == 200
