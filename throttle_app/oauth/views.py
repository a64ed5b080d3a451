"""The OAuth install: GET /api/oauth/authorize and GET /api/oauth/callback.

The person at the browser is a HubSpot admin, so every answer is a small HTML page (JSON when the
client prefers it). Pages never show a token, the code or the state. Operators read the portals'
connection state at GET /api/oauth/portals (config API bearer token) or `flask throttle portals`.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlencode

import redis
from flask import Blueprint, Response, jsonify, redirect, render_template_string, request, url_for
from redis import RedisError
from sqlalchemy.exc import SQLAlchemyError

from throttle_app.config import Settings
from throttle_app.http_api import config_token_guard
from throttle_app.hubspot import oauth_api
from throttle_app.hubspot.app_definition import REQUIRED_SCOPES
from throttle_app.oauth import install_state, rotation
from throttle_app.oauth.time_zones import PortalZones
from throttle_app.oauth.tokens import InstalledPortal, TokenStore

log = logging.getLogger(__name__)

SCOPES = " ".join(REQUIRED_SCOPES)  # the app definition declares the same scopes
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Throttle: {{ title }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;
color:#33475b}h1{font-size:1.4rem}a{color:#0091ae}</style></head>
<body><h1>{{ title }}</h1><p>{{ text }}</p>
{% if retry %}<p><a href="{{ retry }}">Start the install again</a></p>{% endif %}
</body></html>
"""
FAILURES: dict[str, tuple[int, str, str]] = {
    "denied": (400, "Install cancelled", "The app was not installed: access was not granted."),
    "missing_code": (400, "Install failed", "HubSpot did not send an authorization code."),
    "code_rejected": (
        400,
        "Install failed",
        "HubSpot did not accept the authorization: it may have expired or been used already.",
    ),
    "hubspot_refused": (502, "Install failed", "HubSpot refused this app's credentials."),
    "hubspot_bad_answer": (502, "Install failed", "HubSpot sent an answer we could not use."),
    "hubspot_unavailable": (
        503,
        "Install failed",
        "HubSpot could not be reached. Please try again in a minute.",
    ),
    "unavailable": (
        503,
        "Install failed",
        "The service is temporarily unavailable. Please try again in a minute.",
    ),
}


class OAuthViews:
    """The install's views for one app: its settings, the state store's Redis, the tokens and
    the portals' time zones."""

    def __init__(
        self,
        settings: Settings,
        connection: redis.Redis,
        tokens: TokenStore,
        zones: PortalZones,
    ) -> None:
        self._settings = settings
        self._redis = connection
        self._tokens = tokens
        self._zones = zones

    def blueprint(self) -> Blueprint:
        bp = Blueprint("oauth", __name__)
        bp.add_url_rule("/api/oauth/authorize", "authorize", self.authorize)
        bp.add_url_rule("/api/oauth/callback", "callback", self.callback)
        guard = config_token_guard(self._settings.config_api_token)
        bp.add_url_rule("/api/oauth/portals", "portals", guard(self.portals))
        return bp

    def _redirect_uri(self) -> str:
        base = self._settings.public_base_url
        return f"{base}/api/oauth/callback" if base else url_for("oauth.callback", _external=True)

    def _secure(self) -> bool:
        return self._redirect_uri().startswith("https://")

    @staticmethod
    def _wants_json() -> bool:
        best = request.accept_mimetypes.best_match(("text/html", "application/json"))
        return best == "application/json"

    def _page(
        self, status: int, title: str, text: str, retry: bool, payload: dict[str, object]
    ) -> Response:
        if self._wants_json():
            response = jsonify(payload)
        else:
            link = url_for("oauth.authorize") if retry else None
            response = Response(render_template_string(PAGE, title=title, text=text, retry=link))
        response.status_code = status
        response.headers.update(HEADERS)
        if status == 503:
            response.headers["Retry-After"] = str(self._settings.retry_after_seconds)
        return response

    def _failure(self, reason: str, text: str | None = None) -> Response:
        """A failure page (or JSON) for ``reason``; unknown reasons are 400s with ``text``."""
        status, title, default = FAILURES.get(reason, (400, "Install failed", ""))
        log.warning("oauth install refused", extra={"reason": reason, "status": status})
        text = text or default
        return self._page(
            status, title, text, retry=True, payload={"error": text, "reason": reason}
        )

    def authorize(self) -> Response:
        settings = self._settings
        try:
            install_state.check_store(self._redis)
        except RedisError:
            log.exception("oauth state store unavailable")
            return self._failure("unavailable")
        issued = install_state.issue_state(settings)
        query = urlencode(
            {
                "client_id": settings.hubspot_client_id,
                "redirect_uri": self._redirect_uri(),
                "scope": SCOPES,
                "state": issued.value,
            },
            quote_via=quote,
        )
        response = redirect(f"{settings.hubspot_app_base}/oauth/authorize?{query}", 302)
        response.headers.update(HEADERS)
        install_state.set_state_cookie(response, issued, settings, secure=self._secure())
        return response

    def callback(self) -> Response:
        response = self._callback()
        install_state.clear_state_cookie(response, secure=self._secure())
        return response

    def _callback(self) -> Response:
        try:
            install_state.consume_state(
                self._redis,
                self._settings,
                request.args.get("state"),
                request.cookies.get(install_state.COOKIE_NAME),
            )
        except install_state.StateError as exc:
            return self._failure(
                f"state_{exc.reason}", str(exc) + " Please start the install again."
            )
        except RedisError:
            log.exception("oauth state store unavailable")
            return self._failure("unavailable")
        if request.args.get("error"):
            return self._failure("denied")
        code = request.args.get("code")
        if not code:
            return self._failure("missing_code")
        try:
            installed = self._tokens.install_from_code(code, self._redirect_uri())
        except oauth_api.InvalidGrant as exc:
            # Usually an expired or reused code; BAD_REDIRECT_URI here is our PUBLIC_BASE_URL.
            log.warning("HubSpot refused the authorization code: %s", exc.reason)
            return self._failure("code_rejected")
        except oauth_api.OAuthRejected as exc:
            log.error("HubSpot refused the code exchange: %s", exc.reason)
            return self._failure("hubspot_refused")
        except oauth_api.OAuthBadAnswer as exc:
            log.error("unusable answer from HubSpot: %s", exc)
            return self._failure("hubspot_bad_answer")
        except oauth_api.OAuthUnavailable as exc:
            log.warning("HubSpot unavailable during install: %s", exc)
            return self._failure("hubspot_unavailable")
        except SQLAlchemyError:
            log.exception("could not store the install")
            return self._failure("unavailable")
        # The portal's time zone: a failure here never fails the install (UTC until known).
        zone = self._zones.learn(installed.portal_id)
        return self._installed(installed, zone)

    def _installed(self, installed: InstalledPortal, zone: str | None) -> Response:
        where = f"portal {installed.portal_id}"
        if installed.hub_domain:
            where += f" ({installed.hub_domain})"
        verb = "reconnected to" if installed.reconnected else "connected to"
        text = f"Throttle is {verb} {where}. You can close this window."
        payload = {
            "status": "connected",
            "portal_id": installed.portal_id,
            "hub_domain": installed.hub_domain,
            "reconnected": installed.reconnected,
            "time_zone": zone,  # None: not known yet (UTC until the cleaner learns it)
        }
        return self._page(200, "Throttle is installed", text, retry=False, payload=payload)

    def portals(self) -> Response:
        """Operators: every installed portal and whether it is connected (no secrets)."""
        return jsonify({"portals": [p.to_json() for p in rotation.list_portals()]})
