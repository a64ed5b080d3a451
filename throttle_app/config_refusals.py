"""Closed by default: what start-up refuses outside development mode (THROTTLE_DEV_MODE), and in
every mode. Settings.from_env applies it to every row; the dashboard role to its few rows.

Secrets this service compares (or signs with) must have at least MIN_SECRET_LENGTH characters:
32 random characters are out of reach of guessing, and a shorter value is almost always a
placeholder. That includes HUBSPOT_CLIENT_SECRET, which HubSpot issues as a 36-character UUID:
a shorter one is a placeholder or a truncated paste, and would refuse every webhook anyway.
Development mode lifts these refusals for a local stack (an http:// fake HubSpot, dev secrets);
it never lifts the ones every mode makes (a non-Redis REDIS_URL, a web /rq without password).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from throttle_app.config_rows import ConfigError

MIN_SECRET_LENGTH = 32
_STRONG_SECRETS = (
    ("hubspot_client_secret", "HUBSPOT_CLIENT_SECRET"),
    ("secret_key", "SECRET_KEY"),
    ("config_api_token", "CONFIG_API_TOKEN"),
    ("metrics_token", "THROTTLE_METRICS_TOKEN"),
    ("dashboard_password", "THROTTLE_DASHBOARD_PASSWORD"),
)
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_REDIS_FALSE = ("0", "F", "FALSE", "N", "NO")  # what redis-py's URL parser reads as false


def production_refusals(values: Mapping[str, Any]) -> list[str]:
    """What only development mode may run with, among `values` (Settings field name -> value;
    a field that is absent is not checked, so a role that reads a few rows checks those). Each
    entry names its setting and never its value."""
    refused = []
    if "public_base_url" in values and not values["public_base_url"]:
        refused.append(
            "PUBLIC_BASE_URL is required (else the signed URL comes from the Host header)"
        )
    for attr, env in (
        ("hubspot_api_base", "HUBSPOT_API_BASE"),
        ("hubspot_app_base", "HUBSPOT_APP_BASE"),
    ):
        if str(values.get(attr, "https://")).startswith("http://"):
            refused.append(f"{env} must be https://")
    if values.get("bench_endpoints"):
        refused.append("THROTTLE_BENCH_ENDPOINTS must be off")
    for attr, env in _STRONG_SECRETS:
        secret = values.get(attr)
        if secret is not None and len(secret) < MIN_SECRET_LENGTH:
            refused.append(
                f"{env} must be at least {MIN_SECRET_LENGTH} characters (it has {len(secret)})"
            )
    if "redis_url" in values:
        refused += _redis_tls_refusals(values["redis_url"])
    return refused


def check_closed_by_default(values: Mapping[str, Any]) -> None:
    """Raise one ConfigError naming every refusal, unless `values` say development mode; and,
    in every mode, refuse a Redis URL of another scheme and a web /rq without a password."""
    if "redis_url" in values and _redis_scheme(values["redis_url"]) not in _REDIS_SCHEMES:
        raise ConfigError("REDIS_URL must be a redis://, rediss:// or unix:// URL")
    if values.get("web_dashboard") and not values.get("dashboard_password"):
        raise ConfigError("THROTTLE_WEB_DASHBOARD needs THROTTLE_DASHBOARD_PASSWORD")
    if values.get("dev_mode"):
        return
    refused = production_refusals(values)
    if refused:
        raise ConfigError(
            "; ".join(refused) + " (THROTTLE_DEV_MODE=true allows this in development only)"
        )


def _redis_scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme
    except ValueError:
        return ""


def _redis_tls_refusals(url: str) -> list[str]:
    """redis-py verifies a rediss:// server's certificate and host name unless the URL's query
    says otherwise (ssl_cert_reqs=none|optional, ssl_check_hostname=false): refuse those."""
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:
        return []
    refused = []
    if any(v != "required" for v in query.get("ssl_cert_reqs", [])):
        refused.append("REDIS_URL must not turn off certificate checks (ssl_cert_reqs)")
    if any(v.upper() in _REDIS_FALSE for v in query.get("ssl_check_hostname", [])):
        refused.append("REDIS_URL must not turn off host name checks (ssl_check_hostname)")
    return refused
