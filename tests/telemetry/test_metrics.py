"""GET /metrics: protection, webhook outcomes, worker counters from Redis, backlog from
PostgreSQL, and counts that add up across several real gunicorn workers."""

from __future__ import annotations

import json
import os
import runpy
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import psycopg2
import pytest
import redis
import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_DATABASE_URL, service_env, truncate_all
from tests.support.hubspot_requests import execution_payload, post_execution, signed_headers
from tests.support.processes import ROOT, free_port, kill_group, start_role, wait_for_http
from throttle_app.intake.admission import AdmissionUnavailable
from throttle_app.release.releaser import ReleaseReport
from throttle_app.services import services_of
from throttle_app.telemetry.web_metrics import _Tallies
from throttle_app.telemetry.worker_metrics import RedisMetrics

TOKEN = "metrics-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def app(make_app, monkeypatch) -> Flask:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return make_app(metrics_token=TOKEN)


def scrape(client) -> Samples:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.data
    assert response.content_type.startswith("text/plain")
    return parse(response.get_data(as_text=True))


def test_not_exposed_without_a_configured_token(make_app):
    client = make_app().test_client()
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 404
    assert response.is_json


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", TOKEN])
def test_wrong_or_missing_token_is_a_401(client, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in response.get_data(as_text=True)


def test_webhooks_counted_by_outcome(app, client):
    before = scrape(client)
    payload = execution_payload(callback_id="metrics-1")
    assert post_execution(client, payload).status_code == 200  # a new BLOCK
    assert post_execution(client, payload).status_code == 200  # a replay, still held
    other_queue = execution_payload(callback_id="metrics-1", workflow_id=7)
    assert post_execution(client, other_queue).status_code == 409
    bad = json.dumps(execution_payload(callback_id="metrics-2")).encode()
    assert client.post("/api/hubspot/action", data=bad).status_code == 401
    assert post_execution(client, b"not json").status_code == 400
    assert post_execution(client, b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1)).status_code == 413

    def down(execution):
        raise AdmissionUnavailable("database is down")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services_of(app).admission, "admit", down)
        response = post_execution(client, execution_payload(callback_id="metrics-3"))
    assert response.status_code == 503

    after = scrape(client)
    expected = {
        ("200", "block"): 1,
        ("200", "replay_block"): 1,
        ("409", "conflict"): 1,
        ("401", "bad_signature"): 1,
        ("400", "invalid"): 1,
        ("413", "too_large"): 1,
        ("503", "unavailable"): 1,
        ("200", "replay_success"): 0,
    }
    for (status, outcome), count in expected.items():
        labels = {"status": status, "outcome": outcome}
        delta = value(after, "throttle_webhooks_total", **labels) - value(
            before, "throttle_webhooks_total", **labels
        )
        assert delta == count, (status, outcome)
    # Four admissions were timed: new, replay, conflict, and the one that gave a 503.
    count = "throttle_admission_duration_seconds_count"
    assert value(after, count) - value(before, count) == 4


def test_worker_counters_from_redis_appear(app, client, redis_conn):
    worker_metrics = RedisMetrics(redis_conn)
    if True:
        worker_metrics.incr("releases_total", {"outcome": "completed"}, 3)
        worker_metrics.count_releases(ReleaseReport(completed=2, failed=1, given_back=4))
        worker_metrics.hubspot_call(204)
        worker_metrics.hubspot_call(204)
        worker_metrics.hubspot_call("timeout")
        worker_metrics.rate_limited(2.5)
        worker_metrics.bucket_waited(0.25, acquired=True)
        worker_metrics.bucket_waited(0.5, acquired=False)
        worker_metrics.bucket_waited(0.0, acquired=True)  # a token at once: not a wait
        worker_metrics.incr("token_refreshes_total", {"result": "refreshed"})
        with worker_metrics.observe_job("release"):
            pass
        with pytest.raises(RuntimeError), worker_metrics.observe_job("release"):
            raise RuntimeError("the job failed")
    assert redis_conn.hget("throttle:metrics:releases_total", "outcome=completed") == b"5"

    samples = scrape(client)
    assert value(samples, "throttle_releases_total", outcome="completed") == 5
    assert value(samples, "throttle_releases_total", outcome="failed") == 1
    assert value(samples, "throttle_releases_total", outcome="given_back") == 4
    assert value(samples, "throttle_hubspot_calls_total", status="204") == 2
    assert value(samples, "throttle_hubspot_calls_total", status="timeout") == 1
    assert value(samples, "throttle_hubspot_rate_limited_total") == 1
    assert value(samples, "throttle_hubspot_rate_limited_seconds_total") == 2.5
    assert value(samples, "throttle_bucket_waits_total", result="inline") == 1
    assert value(samples, "throttle_bucket_waits_total", result="deferred") == 1
    assert value(samples, "throttle_bucket_wait_seconds_total") == 0.75
    assert value(samples, "throttle_token_refreshes_total", result="refreshed") == 1
    assert value(samples, "throttle_jobs_total", job="release", result="ok") == 1
    assert value(samples, "throttle_jobs_total", job="release", result="failed") == 1
    assert value(samples, "throttle_job_duration_seconds_count", job="release") == 2
    assert value(samples, "throttle_job_duration_seconds_bucket", job="release", le="0.05") == 2
    assert value(samples, "throttle_job_duration_seconds_bucket", job="release", le="+Inf") == 2
    assert value(samples, "throttle_metrics_source_up", source="redis") == 1


def test_metric_calls_never_raise(app, redis_conn):
    dead = RedisMetrics(redis.Redis(port=free_port(), socket_connect_timeout=0.2))
    dead.incr("releases_total", {"outcome": "completed"})
    dead.count_releases(ReleaseReport(completed=1))
    with dead.observe_job("release"):
        pass
    with pytest.raises(ValueError, match="business"), dead.observe_job("release"):
        raise ValueError("business error propagates unchanged")
    worker_metrics = RedisMetrics(redis_conn)
    worker_metrics.incr("no_such_metric_total")
    worker_metrics.incr("releases_total", {"wrong_label": "x"})
    assert not redis_conn.exists("throttle:metrics:no_such_metric_total")
    assert b"wrong_label=x" not in redis_conn.hkeys("throttle:metrics:releases_total")


def test_backlog_per_queue_matches_the_database(app, client):
    for n in range(7):
        workflow = 100 + n % 3
        payload = execution_payload(callback_id=f"backlog-{n}", workflow_id=workflow)
        assert post_execution(client, payload).status_code == 200
    with psycopg2.connect(TEST_DATABASE_URL) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE action_executions SET state = 'claimed' WHERE id IN"
            " (SELECT min(id) FROM action_executions GROUP BY queue_id)"
        )
        cur.execute(
            "SELECT queue_id, state, count(*) FROM action_executions GROUP BY queue_id, state"
        )
        expected = {(str(q), state): n for q, state, n in cur.fetchall()}
    conn.close()
    assert len({q for q, _ in expected}) == 3

    samples = scrape(client)
    found = {
        (dict(labels)["queue_id"], dict(labels)["state"]): v
        for (name, labels), v in samples.items()
        if name == "throttle_backlog_executions"
    }
    assert found == expected
    all_queues = "throttle_backlog_executions_all_queues"
    assert value(samples, all_queues, state="pending") == 4
    assert value(samples, all_queues, state="claimed") == 3
    assert value(samples, "throttle_metrics_source_up", source="postgres") == 1


def test_backlog_of_disconnected_or_uninstalled_portals_is_exposed(app, client):
    """A portal whose refresh token died, or that never installed the app, holds its executions
    until an install: its backlog is its own gauge (the chart alerts on it); a connected
    portal's backlog is not in it."""
    connected, disconnected, never_installed = 1001, 1002, 1003
    for n, portal in enumerate([connected] * 2 + [disconnected] * 3 + [never_installed] * 4):
        payload = execution_payload(callback_id=f"portal-{n}", portal_id=portal)
        assert post_execution(client, payload).status_code == 200
    with psycopg2.connect(TEST_DATABASE_URL) as conn, conn.cursor() as cur:
        for portal in (connected, disconnected):
            cur.execute(
                "INSERT INTO oauth_tokens (portal_id, access_token, refresh_token, expires_at,"
                " disconnected_at, disconnect_reason)"
                " VALUES (%s, 'x', 'x', now(), CASE WHEN %s THEN now() END, 'BAD_REFRESH_TOKEN')",
                (portal, portal == disconnected),
            )
        cur.execute(
            "UPDATE action_executions SET state = 'claimed' WHERE id ="
            " (SELECT min(e.id) FROM action_executions e JOIN throttle_queues q"
            " ON q.id = e.queue_id WHERE q.portal_id = %s)",
            (disconnected,),
        )
    conn.close()

    samples = scrape(client)
    found = {
        (dict(labels)["portal_id"], dict(labels)["reason"]): v
        for (name, labels), v in samples.items()
        if name == "throttle_disconnected_portal_backlog_executions"
    }
    assert found == {
        (str(disconnected), "disconnected"): 3,
        (str(never_installed), "not_installed"): 4,
    }


def test_scrape_answers_when_redis_is_down(make_app, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app = make_app(
        metrics_token=TOKEN,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        redis_timeout_seconds=0.2,
    )
    samples = scrape(app.test_client())
    assert value(samples, "throttle_metrics_source_up", source="redis") == 0
    assert value(samples, "throttle_metrics_source_up", source="postgres") == 1


@pytest.fixture
def gunicorn_conf(monkeypatch) -> Iterator[dict]:
    for key, val in service_env().items():
        monkeypatch.setenv(key, val)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # recorded, so the hooks' change is undone
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    yield runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_master_makes_and_wipes_the_multiprocess_dir(gunicorn_conf, tmp_path):
    server = SimpleNamespace()
    gunicorn_conf["on_starting"](server)
    made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert made.is_dir() and made.name.startswith("throttle-prometheus-")
    gunicorn_conf["on_exit"](server)
    assert not made.exists()

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "keep.txt").write_text("not ours")
    gunicorn_conf["on_starting"](SimpleNamespace())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    worker = SimpleNamespace(pid=123)
    (tmp_path / "gauge_livesum_123.db").write_bytes(b"live")
    gunicorn_conf["child_exit"](SimpleNamespace(), worker)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.slow
def test_counts_add_up_across_two_gunicorn_workers(migrated_database, redis_conn, tmp_path):
    truncate_all()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    prom_dir = tmp_path / "prom"
    env = service_env(
        PORT=str(port),
        PUBLIC_BASE_URL=base,
        THROTTLE_WEB_WORKERS="2",
        THROTTLE_METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(prom_dir),
    )
    server = start_role("web", env, log_path=tmp_path / "web.log")
    url = f"{base}/api/hubspot/action"

    def send(callback_id: str, workflow_id: int) -> int:
        payload = execution_payload(callback_id=callback_id, workflow_id=workflow_id)
        body = json.dumps(payload).encode()
        # A new connection per request: gunicorn hands each to whichever worker accepts it.
        response = requests.post(url, data=body, headers=signed_headers(body, url=url), timeout=10)
        return response.status_code

    try:
        wait_for_http(f"{base}/api/live", process=server)
        sent = 0
        with ThreadPoolExecutor(max_workers=24) as pool:
            for _round in range(4):
                ids = [(f"multi-{sent + n}", 1 + (sent + n) % 4) for n in range(60)]
                assert set(pool.map(lambda a: send(*a), ids)) == {200}
                sent += len(ids)
            replays = [(f"multi-{n}", 1 + n % 4) for n in range(10)]
            assert set(pool.map(lambda a: send(*a), replays)) == {200}
        time.sleep(_Tallies.FLUSH_SECONDS + 0.5)  # each worker folds its tallies in within 1 s
        pids = {path.stem.split("_")[-1] for path in prom_dir.glob("counter_*.db")}
        assert len(pids) >= 2, "the load never reached both workers"

        RedisMetrics(redis_conn).incr("releases_total", {"outcome": "completed"}, 17)
        with psycopg2.connect(TEST_DATABASE_URL) as conn, conn.cursor() as cur:
            cur.execute("SELECT queue_id, count(*) FROM action_executions GROUP BY queue_id")
            backlog = {str(q): n for q, n in cur.fetchall()}
        conn.close()

        for _ in range(6):  # each scrape may be answered by either worker: all must agree
            response = requests.get(f"{base}/metrics", headers=AUTH, timeout=10)
            assert response.status_code == 200
            samples = parse(response.text)
            assert value(samples, "throttle_webhooks_total", status="200", outcome="block") == sent
            replay = value(samples, "throttle_webhooks_total", status="200", outcome="replay_block")
            assert replay == 10
            assert value(samples, "throttle_admission_duration_seconds_count") == sent + 10
            assert value(samples, "throttle_releases_total", outcome="completed") == 17
            found = {
                dict(labels)["queue_id"]: v
                for (name, labels), v in samples.items()
                if name == "throttle_backlog_executions" and dict(labels)["state"] == "pending"
            }
            assert found == backlog
            time.sleep(0.05)
    finally:
        kill_group(server)
