"""The web process's gunicorn worker: gunicorn's gevent worker, fair across keep-alive connections.

gevent only switches greenlets when one has to wait. gunicorn's gevent worker serves a keep-alive
connection in a loop (answer, read the next request, answer, ...), and when the client's next
request is already there the read does not wait, so that greenlet never yields: one busy
connection keeps the whole worker while requests on its other connections sit unread. HubSpot
keeps connections open too, so its calls would time out behind each other.

`FairGeventWorker` yields once after every answered request, so every connection with a request
waiting is served before the same connection again (figures: docs/measurements.md, "Web worker
fairness").
"""

from __future__ import annotations

import socket
from typing import Any

import gevent
from gunicorn.http.message import Request
from gunicorn.workers.ggevent import GeventWorker

__all__ = ["FairGeventWorker"]


class FairGeventWorker(GeventWorker):
    """`gunicorn -k throttle_app.ops.web_worker.FairGeventWorker`: yields after every request."""

    def handle_request(
        self, listener_name: Any, req: Request, sock: socket.socket, addr: Any
    ) -> bool | None:
        keep_alive = super().handle_request(listener_name, req, sock, addr)
        try:
            gevent.sleep(0)  # to the back of the run queue: other connections go first
        except gevent.GreenletExit:
            # Killed at shutdown while yielding: this request is answered, so close quietly
            # (escaping, the exit would make gunicorn write a 500 after the answer).
            raise StopIteration from None
        return keep_alive
