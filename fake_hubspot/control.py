"""The ``/_fake/`` control and read-out API, for the sandbox and for tests in other processes.

Not part of HubSpot: never rate limited, never delayed, never counted in the stats. Errors answer
``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fake_hubspot.messages import Reply, Request, json_reply
from fake_hubspot.state import Hub

PREFIX = "/_fake/"


class BadControl(Exception):
    """A control request that cannot be carried out (answered 400)."""


def _body(req: Request) -> dict[str, Any]:
    if not req.body.strip():
        return {}
    try:
        body = req.json()
    except (ValueError, UnicodeDecodeError):
        raise BadControl("body must be JSON") from None
    if not isinstance(body, dict):
        raise BadControl("body must be a JSON object")
    return body


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadControl(f"{name} (string) is required")
    return value


def _optional_int(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadControl(f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadControl(f"{name} must be an integer") from None


def _completions(hub: Hub, req: Request) -> Reply:
    portal_id = _optional_int(req.param("portal_id"), "portal_id")
    return json_reply(200, hub.completions(req.param("callback_id"), portal_id))


def _stats(hub: Hub, req: Request) -> Reply:
    return json_reply(200, hub.stats())


def _get_faults(hub: Hub, req: Request) -> Reply:
    return json_reply(200, hub.faults())


def _set_faults(hub: Hub, req: Request) -> Reply:
    try:
        return json_reply(200, hub.set_faults(_body(req)))
    except ValueError as problem:
        raise BadControl(str(problem)) from None


def _reset(hub: Hub, req: Request) -> Reply:
    tokens = _body(req).get("tokens", False)
    if not isinstance(tokens, bool):
        raise BadControl("tokens must be true or false")
    hub.reset(tokens=tokens)
    return json_reply(200, {"reset": True, "tokens": tokens})


def _portals(hub: Hub, req: Request) -> Reply:
    body = _body(req)
    portal_id = _optional_int(body.get("portal_id"), "portal_id")
    scopes = body.get("scopes", ["automation", "oauth"])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise BadControl("scopes must be a list of strings")
    return json_reply(200, hub.issue_tokens(portal_id, tuple(scopes)))


def _revoke(hub: Hub, req: Request) -> Reply:
    revoked = hub.revoke_refresh_token(_string(_body(req), "refresh_token"))
    return json_reply(200 if revoked else 404, {"revoked": revoked})


def _expire(hub: Hub, req: Request) -> Reply:
    expired = hub.expire_access_token(_string(_body(req), "access_token"))
    return json_reply(200 if expired else 404, {"expired": expired})


ROUTES: dict[tuple[str, str], Callable[[Hub, Request], Reply]] = {
    ("GET", "completions"): _completions,
    ("GET", "stats"): _stats,
    ("GET", "faults"): _get_faults,
    ("POST", "faults"): _set_faults,
    ("POST", "reset"): _reset,
    ("POST", "portals"): _portals,
    ("POST", "revoke"): _revoke,
    ("POST", "expire"): _expire,
}


def handle(hub: Hub, req: Request) -> Reply:
    """Answer a request whose path starts with ``/_fake/``."""
    name = req.path[len(PREFIX) :].strip("/")
    route = ROUTES.get((req.method, name))
    if route is None:
        known = any(key[1] == name for key in ROUTES)
        status = 405 if known else 404
        return json_reply(status, {"error": f"no route for {req.method} {req.path}"})
    try:
        return route(hub, req)
    except BadControl as problem:
        return json_reply(400, {"error": str(problem)})
