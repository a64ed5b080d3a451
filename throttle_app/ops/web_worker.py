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
Here the whole body must arrive within ``body_read_timeout_seconds`` of the request's headers:
a read that would wait past that raises `RequestTimeout` (the app answers 408) and the
connection is closed after the answer. Each worker also raises its open-files limit (within the
hard limit) to fit ``worker_connections``, so a flood of idle clients waits in greenlets, not in
the kernel's accept queue in front of HubSpot.
"""

from __future__ import annotations

import logging
import resource
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import gevent
from gunicorn.http.message import Request
from gunicorn.workers.ggevent import GeventWorker
from werkzeug.exceptions import RequestTimeout

__all__ = ["BodyDeadline", "FairGeventWorker", "raise_open_files_limit"]

log = logging.getLogger(__name__)

# Descriptors a worker needs besides its client connections: the listener, database and Redis
# pools, log files, the metrics files, the HubSpot session.
SPARE_FILES = 256


class BodyDeadline:
    """A request body (``wsgi.input``) whose reads must finish by a deadline.

    A read that would wait past the deadline raises `RequestTimeout` (an HTTP 408 for the app),
    marks the body ``expired`` and calls ``on_expiry`` (the worker closes the connection after
    the answer); data already received is still returned after the deadline, only waiting for
    more is refused.
    """

    def __init__(
        self,
        body: Any,
        deadline: float,
        seconds: float,
        on_expiry: Callable[[], None] = lambda: None,
    ) -> None:
        self._body = body
        self._deadline = deadline  # time.monotonic()
        self._seconds = seconds
        self._on_expiry = on_expiry
        self.expired = False

    def _within_deadline(self, read: Callable[..., Any], size: int | None) -> Any:
        timer = gevent.Timeout(max(0.0, self._deadline - time.monotonic()))
        timer.start()
        try:
            return read(size)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            self.expired = True
            self._on_expiry()
            raise RequestTimeout(
                f"the request body did not arrive within {self._seconds:g} s"
            ) from None
        finally:
            timer.close()

    def read(self, size: int | None = None) -> bytes:
        return self._within_deadline(self._body.read, size)

    def readline(self, size: int | None = None) -> bytes:
        return self._within_deadline(self._body.readline, size)

    def readlines(self, size: int | None = None) -> list[bytes]:
        return self._within_deadline(self._body.readlines, size)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


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
    cuts off bodies that stop arriving (gunicorn.conf.py sets ``body_read_timeout_seconds``)."""

    body_read_timeout_seconds: ClassVar[float] = 5.0

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
        seconds = self.body_read_timeout_seconds
        original = req.body

        def close_after_answer() -> None:
            req.must_close = True  # "Connection: close" on the 408, then gunicorn closes

        deadline = time.monotonic() + seconds
        body = req.body = BodyDeadline(original, deadline, seconds, close_after_answer)
        try:
            keep_alive = super().handle_request(listener_name, req, sock, addr)
        finally:
            # What the app left unread is drained by gunicorn before the next request on this
            # connection, under its keep-alive timeout (a silent close), not this deadline.
            req.body = original
        if body.expired:
            raise StopIteration  # the rest of the body may never come: close the connection
        try:
            gevent.sleep(0)  # to the back of the run queue: other connections go first
        except gevent.GreenletExit:
            # Killed at shutdown while yielding: this request is answered, so close quietly
            # (escaping, the exit would make gunicorn write a 500 after the answer).
            raise StopIteration from None
        return keep_alive
