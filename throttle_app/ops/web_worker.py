"""The web process's gunicorn worker: gunicorn's gevent worker, fair across keep-alive connections,
with a deadline on every request body and room for many idle connections.

gevent only switches greenlets when one has to wait. gunicorn's gevent worker serves a keep-alive
connection in a loop (answer, read the next request, answer, ...), and when the client's next
request is already there the read does not wait, so that greenlet never yields: one busy
connection keeps the whole worker while requests on its other connections sit unread. HubSpot
keeps connections open too, so its calls would time out behind each other.

`FairGeventWorker` yields once after every answered request, so every connection with a request
waiting is served before the same connection again (figures: docs/measurements.md, "Web worker
fairness").

gunicorn's gevent worker bounds the wait for request headers (its keep-alive timeout) but not the
wait for a body: a client that announces a body and stops sending holds its greenlet forever.
Here the worker receives the body itself before the app runs: the whole body (up to
``max_body_bytes`` + 1, enough for the app's 413; a larger Content-Length is not read at all)
must arrive within
``body_read_timeout_seconds`` of the request's headers, else the worker answers 408 and closes
the connection without running the app. The app only ever reads a body already in memory, and a
client that stops sending costs a parse and a waiting greenlet, not a pass through the app. Each
worker also raises its open-files limit (within the hard limit) to fit ``worker_connections``, so
a flood of idle clients waits in greenlets, not in the kernel's accept queue in front of HubSpot.
"""

from __future__ import annotations

import io
import json
import resource
import socket
import time
from datetime import timedelta
from typing import Any, ClassVar

import gevent
from gunicorn.http import wsgi
from gunicorn.http.message import Request
from gunicorn.workers.ggevent import GeventWorker

__all__ = ["FairGeventWorker", "raise_open_files_limit", "receive_body"]

# Descriptors a worker needs besides its client connections: the listener, database and Redis
# pools, log files, the metrics files, the HubSpot session.
SPARE_FILES = 256
READ_STEP = 64 * 1024


def receive_body(body: Any, limit: int, deadline: float) -> bytes | None:
    """Read ``body`` (a gunicorn request body) up to ``limit`` bytes; None if that needs waiting
    past ``deadline`` (time.monotonic()). Fewer than ``limit`` bytes means the whole body."""
    chunks: list[bytes] = []
    size = 0
    timer = gevent.Timeout(max(0.0, deadline - time.monotonic()))
    timer.start()
    try:
        while size < limit:
            chunk = body.read(min(READ_STEP, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        return None
    finally:
        timer.close()
    return b"".join(chunks)


def raise_open_files_limit(needed: int) -> int:
    """Raise this process's soft open-files limit to ``needed`` (never above the hard limit);
    return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft


class FairGeventWorker(GeventWorker):
    """`gunicorn -k throttle_app.ops.web_worker.FairGeventWorker`: yields after every request,
    receives bodies under a deadline before the app runs (gunicorn.conf.py sets the class
    attributes from the settings)."""

    body_read_timeout_seconds: ClassVar[float] = 5.0
    max_body_bytes: ClassVar[int] = 64 * 1024

    def init_process(self) -> None:
        needed = self.worker_connections + SPARE_FILES
        limit = raise_open_files_limit(needed)
        if limit != resource.RLIM_INFINITY and limit < needed:
            self.log.warning(
                "open-files limit %s is below %s worker connections + %s: raise `ulimit -n`",
                limit,
                self.worker_connections,
                SPARE_FILES,
            )
        super().init_process()

    def handle_request(
        self, listener_name: Any, req: Request, sock: socket.socket, addr: Any
    ) -> bool | None:
        started = time.monotonic()
        body = self._receive(req, sock, started + self.body_read_timeout_seconds)
        if body is None:
            self._refuse_slow_body(listener_name, req, sock, addr, started)
            raise StopIteration  # the rest may never come: close the connection
        req.body = io.BytesIO(body)
        keep_alive = super().handle_request(listener_name, req, sock, addr)
        try:
            gevent.sleep(0)  # to the back of the run queue: other connections go first
        except gevent.GreenletExit:
            # Killed at shutdown while yielding: this request is answered, so close quietly
            # (escaping, the exit would make gunicorn write a 500 after the answer).
            raise StopIteration from None
        return keep_alive

    def _receive(self, req: Request, sock: socket.socket, deadline: float) -> bytes | None:
        """The request's body as the app will see it, or None if it missed the deadline. A body
        over the cap is cut at cap + 1 bytes (never read at all when its Content-Length says so)
        and its connection closes after the answer; a chunked body is given to the app with
        the Content-Length it turned out to have, so one over the cap is a 413 there too."""
        limit = self.max_body_bytes + 1
        declared = next((int(v) for name, v in req.headers if name == "CONTENT-LENGTH"), None)
        if declared is not None and declared >= limit:
            req.must_close = True
            req._expected_100_continue = False  # the final answer (413) comes instead
            return b""  # the app refuses it by its Content-Length (413) without reading it
        if req._expected_100_continue:  # the client waits for this before it sends the body
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            req._expected_100_continue = False
        body = receive_body(req.body, limit, deadline)
        if body is None:
            return None
        if len(body) >= limit:
            req.must_close = True
        if any(name == "TRANSFER-ENCODING" for name, _ in req.headers):
            req.headers = [(name, v) for name, v in req.headers if name != "TRANSFER-ENCODING"]
            req.headers.append(("CONTENT-LENGTH", str(len(body))))
        return body

    def _refuse_slow_body(
        self, listener_name: Any, req: Request, sock: socket.socket, addr: Any, started: float
    ) -> None:
        """Answer 408 (JSON, like the app's errors, with a request id) and log the access."""
        # Imported here, in the worker: gunicorn's master imports this module and never Flask.
        from throttle_app.telemetry.request_context import REQUEST_ID_HEADER, request_id_from

        req.must_close = True
        resp, environ = wsgi.create(req, sock, addr, listener_name, self.cfg)
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        seconds = self.body_read_timeout_seconds
        error = {"error": f"the request body did not arrive within {seconds:g} s"}
        payload = json.dumps(error).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            (REQUEST_ID_HEADER, request_id),
        ]
        resp.start_response("408 Request Timeout", headers)
        try:
            resp.write(payload)
            resp.close()
        finally:
            elapsed = timedelta(seconds=time.monotonic() - started)
            self.log.access(resp, req, environ, elapsed)
