"""JSON log lines carry a request id (echoed in X-Request-Id) or an RQ job id, the portal and
queue where known, and never a secret: in the app's own logs and in gunicorn's."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import redis
import requests
from flask import Flask, request

from tests.conftest import service_env, truncate_all
from tests.support.hubspot_requests import execution_payload, post_execution
from tests.support.processes import free_port, kill_group, start_role, wait_for_http
from throttle_app.intake.admission import AdmissionUnavailable
from throttle_app.release import jobs
from throttle_app.release.job_format import JsonQueue
from throttle_app.services import services_of
from throttle_app.telemetry.logs import configure_logging, current_context
from throttle_app.telemetry.worker_metrics import RedisMetrics

UPSTREAM_TOKEN = "upstream-token-zq81-7731-aa"
CONFIG_TOKEN = "test-config-token-0123456789abcdef"  # service_env()'s CONFIG_API_TOKEN, literally
GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def app(make_app) -> Flask:
    app = make_app()

    @app.get("/test/upstream-error")
    def upstream_error():
        raise RuntimeError(
            f"upstream refused {request.headers.get('Authorization')}"
            f" (key {request.headers.get('X-Api-Key')})"
        )

    return app


@pytest.fixture
def logs(app: Flask) -> Iterator[Callable[[], list[dict]]]:
    """The app's log records as parsed JSON lines (every line must parse)."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    secrets = app.config["THROTTLE_SETTINGS"].secrets
    configure_logging("INFO", secrets=secrets, json_lines=True, stream=stream)

    def read() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    read.text = stream.getvalue  # type: ignore[attr-defined]
    try:
        yield read
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)


def test_request_id_is_echoed_and_on_every_line_and_secrets_are_redacted(client, logs):
    response = client.get(
        "/test/upstream-error",
        headers={
            "X-Request-Id": "edge-7f3a.42",
            "Authorization": f"Bearer {UPSTREAM_TOKEN}",
            "X-Api-Key": CONFIG_TOKEN,
        },
    )
    assert response.status_code == 500
    assert response.headers["X-Request-Id"] == "edge-7f3a.42"
    lines = logs()
    assert lines, "the error path logged nothing"
    assert all(line["request_id"] == "edge-7f3a.42" for line in lines)
    error = next(line for line in lines if line["message"] == "unhandled error")
    assert "[REDACTED]" in error["exc_info"]
    text = logs.text()
    assert UPSTREAM_TOKEN not in text
    assert CONFIG_TOKEN not in text


@pytest.mark.parametrize(
    "incoming",
    [None, "", "has space", '"quoted"', "x" * 129, "tab\tchar", "a;b", "-leading-dash", "é"],
)
def test_an_unusable_request_id_is_replaced(client, incoming):
    headers = {} if incoming is None else {"X-Request-Id": incoming}
    echoed = client.get("/api/live", headers=headers).headers["X-Request-Id"]
    assert GENERATED.fullmatch(echoed)
    assert echoed != incoming


def test_each_request_gets_its_own_id_and_the_context_is_cleared(client, logs):
    first = client.get("/api/live").headers["X-Request-Id"]
    second = client.get("/api/live").headers["X-Request-Id"]
    assert first != second
    assert current_context() == {}
    logging.getLogger("tests").info("outside any request")
    assert "request_id" not in logs()[-1]


def test_webhook_lines_carry_portal_and_queue(app, client, logs, monkeypatch):
    def down(execution):
        raise AdmissionUnavailable("database is down")

    post_execution(client, execution_payload(callback_id="logs-1"))
    monkeypatch.setattr(services_of(app).admission, "admit", down)
    payload = execution_payload(callback_id="logs-2", portal_id=777, workflow_id=55)
    response = post_execution(client, payload)
    assert response.status_code == 503
    warning = next(line for line in logs() if "admission unavailable" in line["message"])
    assert warning["request_id"] == response.headers["X-Request-Id"]
    assert warning["portal_id"] == 777
    assert warning["queue"] == "777:55:1"


LOG_SERVICES = SimpleNamespace(
    metrics=RedisMetrics(redis.Redis.from_url(service_env()["REDIS_URL"]))
)


def logged_job() -> str:
    """An RQ job body that logs inside the jobs' context (imported by RQ by its path)."""
    with jobs._job_context(LOG_SERVICES, "test", queue_id=5):
        logging.getLogger("tests.job").info("inside the job")
    return "done"


def test_rq_job_lines_carry_the_job_id(app, logs, redis_conn: redis.Redis):
    queue = JsonQueue("logs-test", connection=redis_conn, is_async=False)
    with app.app_context():
        job = queue.enqueue(logged_job)
    assert job.return_value() == "done"
    line = next(line for line in logs() if line["message"] == "inside the job")
    assert line["job_id"] == job.id
    assert line["job"] == "test"
    assert line["queue_id"] == 5
    assert redis_conn.hget("throttle:metrics:jobs_total", "job=test&result=ok") == b"1"


@pytest.mark.slow
def test_gunicorn_lines_are_json_with_request_ids_and_redacted(migrated_database, tmp_path):
    truncate_all()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    metrics_token = "metrics-token-logs-0123456789"
    env = service_env(
        PORT=str(port),
        PUBLIC_BASE_URL=base,
        THROTTLE_WEB_WORKERS="2",
        THROTTLE_LOG_JSON="true",
        THROTTLE_METRICS_TOKEN=metrics_token,
    )
    log_path = tmp_path / "web.log"
    server = start_role("web", env, log_path=log_path)
    try:
        wait_for_http(f"{base}/api/live", process=server)
        agent = f"probe/1.0 Bearer {UPSTREAM_TOKEN}"
        live = requests.get(
            f"{base}/api/live", headers={"X-Request-Id": "lb-req-0001", "User-Agent": agent}
        )
        assert live.headers["X-Request-Id"] == "lb-req-0001"
        scraped = requests.get(
            f"{base}/metrics", headers={"Authorization": f"Bearer {metrics_token}"}
        )
        assert scraped.status_code == 200
        generated = scraped.headers["X-Request-Id"]
        assert GENERATED.fullmatch(generated)
    finally:
        kill_group(server, signal.SIGTERM)
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    access = {line.get("request_id"): line for line in lines if line.get("type") == "access"}
    assert access["lb-req-0001"]["path"] == "/api/live"
    assert "[REDACTED]" in access["lb-req-0001"]["agent"]
    assert access[generated]["path"] == "/metrics"
    assert any(line.get("logger") == "gunicorn.error" for line in lines)
    for secret in (UPSTREAM_TOKEN, metrics_token, CONFIG_TOKEN):
        assert secret not in text
