"""Requests and replies passed between the HTTP server and the endpoint handlers.

Also builds HubSpot-shaped answers: API errors (``{"status":"error","category":...}``) and the
plain bodies a gateway sends for 502/503.
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Request:
    """One HTTP request, already read off the socket."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]  # case-insensitive lookups (http.client.HTTPMessage)
    body: bytes = b""
    received: float | None = None  # time.time() when its request line arrived (None: unknown)

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else None

    def content_type(self) -> str:
        """The media type, lower-cased, without parameters."""
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def form(self) -> dict[str, str]:
        """The urlencoded body (first value of each field); ValueError if not UTF-8."""
        text = self.body.decode("utf-8")
        return {key: values[0] for key, values in parse_qs(text, keep_blank_values=True).items()}

    def json(self) -> Any:
        """The JSON body; ValueError if it is not JSON."""
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Reply:
    """One HTTP answer. ``delay`` seconds pass before it is written (simulated latency)."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def correlation_id() -> str:
    """A fresh HubSpot-style correlation id."""
    return str(uuid.uuid4())


def json_reply(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
    """A JSON answer."""
    body = json.dumps(payload).encode("utf-8")
    return Reply(status, body, "application/json;charset=utf-8", dict(headers or {}))


def html_reply(status: int, title: str, text: str) -> Reply:
    """A small HTML page (consent page errors, gateway errors)."""
    page = (
        f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return Reply(status, page.encode("utf-8"), "text/html;charset=utf-8")


def api_error(status: int, message: str, category: str, **extra: Any) -> Reply:
    """A HubSpot API error: ``{"status":"error","message","correlationId","category",...}``."""
    cid = correlation_id()
    payload = {"status": "error", "message": message, "correlationId": cid, "category": category}
    payload.update(extra)
    return json_reply(status, payload, {"X-HubSpot-Correlation-Id": cid})


def server_error(status: int) -> Reply:
    """A 5xx as HubSpot's edge sends it: JSON for 500, an HTML gateway page for 502/503/504."""
    if status == 500:
        return api_error(500, "internal error", "INTERNAL_ERROR")
    titles = {502: "502 Bad Gateway", 503: "503 Service Unavailable", 504: "504 Gateway Timeout"}
    title = titles.get(status, f"{status} Server Error")
    return html_reply(status, title, "The server encountered a temporary error.")
