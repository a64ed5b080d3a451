"""The web worker is fair: one busy keep-alive connection does not hold the others' requests."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.conftest import service_env
from tests.support.processes import free_port, kill_group, start_role, wait_for_http

pytestmark = pytest.mark.slow

PIPELINED = 2000
REQUEST = b"GET /api/live HTTP/1.1\r\nHost: test\r\n\r\n"


class ResponseCounter(threading.Thread):
    """Reads one connection and timestamps every response status line as it arrives."""

    def __init__(self, sock: socket.socket, expected: int) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.expected = expected
        self.arrivals: list[float] = []

    def run(self) -> None:
        buffer = b""
        while len(self.arrivals) < self.expected:
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
            while (start := buffer.find(b"HTTP/1.1 ")) != -1 and (
                end := buffer.find(b"\r\n\r\n", start)
            ) != -1:
                status = buffer[start + 9 : start + 12]
                assert status == b"200", buffer[start : end + 4]
                self.arrivals.append(time.monotonic())
                buffer = buffer[end + 4 :]


def test_a_busy_keep_alive_connection_does_not_starve_another(migrated_database, tmp_path):
    port = free_port()
    env = service_env(PORT=str(port), THROTTLE_WEB_WORKERS="1")
    server = start_role("web", env, log_path=tmp_path / "web.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/live", process=server)
        busy = socket.create_connection(("127.0.0.1", port))
        other = socket.create_connection(("127.0.0.1", port))
        other.sendall(REQUEST)  # both connections are open and served before the burst
        other.recv(65536)
        busy_reader = ResponseCounter(busy, PIPELINED)
        busy_reader.start()

        busy.sendall(REQUEST * PIPELINED)  # HTTP/1.1 pipelining: every request already there
        time.sleep(0.01)
        other.sendall(REQUEST)
        other_reader = ResponseCounter(other, 1)
        other_reader.run()
        busy_reader.join(60)

        assert len(busy_reader.arrivals) == PIPELINED  # all answered, none lost
        answered_before = sum(t < other_reader.arrivals[0] for t in busy_reader.arrivals)
        # gunicorn's stock gevent worker answers all 2000 pipelined requests first.
        assert answered_before < PIPELINED // 2, (
            f"the other connection waited for {answered_before} of the busy one's requests"
        )
        busy.close()
        other.close()
    finally:
        kill_group(server)
