"""OAuth endpoints: the sandbox consent page, the token endpoint and token introspection.

Token endpoints do not count against a portal's rate limit (HubSpot doesn't count them).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fake_hubspot.messages import Reply, Request, correlation_id, html_reply, json_reply
from fake_hubspot.state import Hub
from fake_hubspot.tokens import OAuthError, bad_client

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/2026-03/token"  # noqa: S105 (a path, not a secret)
INTROSPECT_PATH = "/oauth/2026-03/token/introspect"
FORM_TYPE = "application/x-www-form-urlencoded"


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def authorize(hub: Hub, req: Request) -> Reply:
    """Auto-approving consent page: 302 to ``redirect_uri?code=...&state=...``.

    Sandbox extras: ``portal_id`` picks the installing portal; ``deny=1`` answers as if the
    user declined (``error=access_denied``).
    """
    if req.param("client_id") != hub.client_id:
        return html_reply(400, "Authorization failed", "Unknown or missing client_id.")
    redirect_uri = req.param("redirect_uri") or ""
    if urlsplit(redirect_uri).scheme not in ("http", "https") or not urlsplit(redirect_uri).netloc:
        return html_reply(400, "Authorization failed", "Missing or invalid redirect_uri.")
    scopes = tuple((req.param("scope") or "").split())
    if not scopes:
        return html_reply(400, "Authorization failed", "Missing scope.")
    try:
        portal_id = int(req.param("portal_id") or hub.settings.default_portal_id)
    except ValueError:
        return html_reply(400, "Authorization failed", "portal_id must be an integer.")
    state = req.param("state")
    extra = {} if state is None else {"state": state}
    if req.param("deny") in ("1", "true"):
        params = {"error": "access_denied", "error_description": "The user denied access"}
        return Reply(302, headers={"Location": _with_query(redirect_uri, params | extra)})
    with hub.lock:
        code = hub.tokens.new_code(portal_id, scopes, redirect_uri, hub.settings.code_ttl)
    return Reply(302, headers={"Location": _with_query(redirect_uri, {"code": code} | extra)})


def _oauth_error(error: OAuthError) -> Reply:
    cid = correlation_id()
    payload = {
        "status": error.status,
        "message": error.message,
        "error": error.error,
        "error_description": error.message,
        "correlationId": cid,
    }
    return json_reply(error.http_status, payload, {"X-HubSpot-Correlation-Id": cid})


def _form(req: Request) -> dict[str, str]:
    if req.method != "POST":
        raise OAuthError(405, "METHOD_NOT_ALLOWED", "invalid_request", "use POST")
    if req.content_type() != FORM_TYPE:
        raise OAuthError(400, "BAD_REQUEST", "invalid_request", f"body must be {FORM_TYPE}")
    try:
        return req.form()
    except ValueError:
        raise OAuthError(400, "BAD_REQUEST", "invalid_request", "body is not UTF-8") from None


def _check_client(hub: Hub, form: dict[str, str]) -> None:
    if form.get("client_id") != hub.client_id:
        raise bad_client("client_id")
    if form.get("client_secret") != hub.client_secret:
        raise bad_client("client_secret")


def token(hub: Hub, req: Request) -> Reply:
    """``POST /oauth/2026-03/token``: authorization_code and refresh_token grants."""
    delay = hub.settings.token_latency
    try:
        answer = _token(hub, req)
    except OAuthError as error:
        reply = _oauth_error(error)
    else:
        reply = json_reply(200, answer, {"Cache-Control": "no-store"})
    reply.delay = delay
    return reply


def _token(hub: Hub, req: Request) -> dict[str, Any]:
    try:
        form = _form(req)
    except OAuthError:
        with hub.lock:
            hub.token_calls["(unreadable)"] += 1
        raise
    grant_type = form.get("grant_type", "")
    with hub.lock:
        hub.token_calls[grant_type or "(missing)"] += 1
        _check_client(hub, form)
        settings = hub.settings
        if grant_type == "authorization_code":
            code, redirect_uri = form.get("code", ""), form.get("redirect_uri", "")
            return hub.tokens.redeem_code(code, redirect_uri, settings.expires_in)
        if grant_type == "refresh_token":
            refresh_token = form.get("refresh_token", "")
            return hub.tokens.refresh(
                refresh_token, settings.expires_in, settings.rotate_refresh_tokens
            )
    raise OAuthError(400, "BAD_GRANT_TYPE", "unsupported_grant_type", "unsupported grant_type")


def introspect(hub: Hub, req: Request) -> Reply:
    """``POST /oauth/2026-03/token/introspect``: facts about a token, or ``{"active": false}``."""
    delay = hub.settings.token_latency
    try:
        form = _form(req)
        if not form.get("token"):
            raise OAuthError(400, "BAD_REQUEST", "invalid_request", "missing token")
        with hub.lock:
            _check_client(hub, form)
            facts = hub.tokens.introspect(form["token"])
            if facts is not None:
                facts |= {"app_id": hub.settings.app_id, "client_id": hub.client_id}
    except OAuthError as error:
        reply = _oauth_error(error)
    else:
        reply = json_reply(200, facts or {"active": False}, {"Cache-Control": "no-store"})
    reply.delay = delay
    return reply
