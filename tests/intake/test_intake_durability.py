"""Invariant 1 on a real server: every acknowledged execution survives a SIGKILL."""

from __future__ import annotations

import json
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import requests

from tests.conftest import TEST_DATABASE_URL, service_env, truncate_all
from tests.support.hubspot_requests import execution_payload, signed_headers
from tests.support.processes import free_port, kill_group, start_role, wait_for_http

pytestmark = pytest.mark.slow


def test_acknowledged_executions_survive_sigkill(migrated_database, tmp_path):
    truncate_all()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(PORT=str(port), PUBLIC_BASE_URL=base, THROTTLE_WEB_WORKERS="2")
    server = start_role("web", env, log_path=tmp_path / "web.log")
    acknowledged: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    try:
        wait_for_http(f"{base}/api/live", process=server)
        session = requests.Session()

        def send(n: int) -> None:
            if enough.is_set():
                return
            callback_id = f"durable-{n}"
            body = json.dumps(execution_payload(callback_id=callback_id)).encode()
            headers = signed_headers(body, url=f"{base}/api/hubspot/action")
            try:
                answer = session.post(
                    f"{base}/api/hubspot/action", data=body, headers=headers, timeout=10
                )
            except requests.RequestException:
                return
            if answer.status_code == 200:
                with lock:
                    acknowledged.append(callback_id)
                    if len(acknowledged) >= 400:
                        enough.set()

        with ThreadPoolExecutor(max_workers=48) as pool:
            futures = [pool.submit(send, n) for n in range(2000)]
            enough.wait(60)
            kill_group(server, signal.SIGKILL)  # mid-burst: requests are still in flight
            for future in futures:
                future.result()
    finally:
        kill_group(server, signal.SIGKILL)
    assert len(acknowledged) >= 400
    conn = psycopg2.connect(TEST_DATABASE_URL)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT callback_id FROM action_executions WHERE callback_id = ANY(%s)", (acknowledged,)
        )
        stored = {row[0] for row in cur.fetchall()}
    conn.close()
    assert set(acknowledged) <= stored, f"lost {len(set(acknowledged) - stored)} acknowledged"
