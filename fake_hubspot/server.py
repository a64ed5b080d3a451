"""The HTTP server and the ``FakeHubSpot`` handle that tests and the sandbox use."""

from __future__ import annotations

import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from fake_hubspot import account_info, callbacks, control, definitions, oauth
from fake_hubspot.messages import Reply, Request, api_error, json_reply
from fake_hubspot.settings import Settings, updated
from fake_hubspot.state import DEFAULT_SCOPES, Hub

MAX_BODY_BYTES = 10 * 1024 * 1024


def dispatch(hub: Hub, req: Request) -> tuple[str | None, Reply]:
    """Route a request: (endpoint name for the stats, or None when not counted; the answer)."""
    path = req.path
    if path.startswith(control.PREFIX):
        return None, control.handle(hub, req)
    if path == oauth.AUTHORIZE_PATH and req.method == "GET":
        return "authorize", oauth.authorize(hub, req)
    if path == oauth.TOKEN_PATH:
        return "token", oauth.token(hub, req)
    if path == oauth.INTROSPECT_PATH:
        return "introspect", oauth.introspect(hub, req)
    if path in account_info.PATHS:
        return "account_info", account_info.details(hub, req)
    if path == callbacks.BATCH_PATH:
        return "complete_batch", callbacks.complete(hub, req, None)
    if path.startswith(callbacks.SINGLE_PREFIX) and path.endswith("/complete"):
        raw_id = path[len(callbacks.SINGLE_PREFIX) : -len("/complete")]
        if raw_id and "/" not in raw_id:
            return "complete", callbacks.complete(hub, req, unquote(raw_id))
    reply = definitions.handle(hub, req)
    if reply is not None:
        return "action_definitions", reply
    return "not_found", api_error(404, f"No route for {req.method} {path}", "OBJECT_NOT_FOUND")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops concurrent connects (1 s SYN retries)

    def __init__(self, address: tuple[str, int], hub: Hub, verbose: bool) -> None:
        super().__init__(address, _Handler)
        self.hub = hub
        self.verbose = verbose


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHubSpot/1.0"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                if sum(map(len, chunks)) > MAX_BODY_BYTES:
                    return None
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        hub = self.server.hub
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._write(json_reply(400, {"error": "unreadable body"}))
            return
        if body is None:
            self.close_connection = True
            self._write(api_error(413, "Request body too large", "VALIDATION_ERROR"))
            return
        parts = urlsplit(self.path)
        req = Request(
            self.command,
            parts.path,
            parse_qs(parts.query, keep_blank_values=True),
            self.headers,
            body,
        )
        try:
            endpoint, reply = dispatch(hub, req)
        except Exception:  # a bug in the fake: say so loudly, answer like a server error
            traceback.print_exc(file=sys.stderr)
            endpoint, reply = "error", api_error(500, "fake_hubspot crashed", "INTERNAL_ERROR")
        if endpoint is not None:
            hub.record_call(endpoint, reply.status)
        if reply.delay > 0 and hub.stopping.wait(reply.delay):
            self.close_connection = True
            return
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.status not in (204, 304) and not 100 <= reply.status < 200:
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.status not in (204, 304) and self.command != "HEAD":
            self.wfile.write(reply.body)


class FakeHubSpot:
    """A local HubSpot: OAuth, callback completion, account details, per-portal rate limits and
    injected faults.

    Keyword ``settings`` are initial values of ``fake_hubspot.settings.Settings`` fields;
    ``reset()`` returns to them.
    """

    def __init__(
        self,
        client_id: str = "test-client-id",
        client_secret: str = "test-client-secret",  # noqa: S107 (a fake's test default)
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        verbose: bool = False,
        **settings: Any,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.host = host
        self._requested_port = port
        self._verbose = verbose
        self._hub = Hub(client_id, client_secret, updated(Settings(), settings))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> FakeHubSpot:
        """Bind and serve on a background thread; returns self."""
        if self._server is not None:
            return self
        self._hub.stopping.clear()
        self._server = _Server((self.host, self._requested_port), self._hub, self._verbose)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"fake-hubspot-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (pending simulated latencies are cut short)."""
        if self._server is None:
            return
        self._hub.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeHubSpot:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (only meaningful once started)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://host:port``: use it as both HUBSPOT_API_BASE and HUBSPOT_APP_BASE."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # Read-outs and controls (mirrored by /_fake/ over HTTP)

    def completions(
        self, callback_id: str | None = None, portal_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Recorded completions, oldest first (see ``GET /_fake/completions``)."""
        return self._hub.completions(callback_id, portal_id)

    def action_definitions(self) -> list[dict[str, Any]]:
        """The app's custom-action definitions (v4 API), oldest first."""
        return self._hub.action_definitions()

    def stats(self) -> dict[str, Any]:
        """Call counts and the like (see ``GET /_fake/stats``)."""
        return self._hub.stats()

    def faults(self) -> dict[str, Any]:
        """The current settings (see ``GET /_fake/faults``)."""
        return self._hub.faults()

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change settings; ValueError on an unknown name or bad value. Returns all settings."""
        return self._hub.set_faults(changes)

    def reset(self, tokens: bool = False) -> None:
        """Clear completions, stats and rate windows and restore the starting settings."""
        self._hub.reset(tokens=tokens)

    def issue_tokens(
        self, portal_id: int | None = None, scopes: tuple[str, ...] = DEFAULT_SCOPES
    ) -> dict[str, Any]:
        """Install the app in a portal without the browser flow; returns the token answer."""
        return self._hub.issue_tokens(portal_id, scopes)

    def revoke_refresh_token(self, refresh_token: str) -> bool:
        """Uninstall: the refresh token and its access tokens die. False if unknown."""
        return self._hub.revoke_refresh_token(refresh_token)

    def expire_access_token(self, access_token: str) -> bool:
        """Make an access token expire now. False if unknown."""
        return self._hub.expire_access_token(access_token)
