"""What the shipping files (Dockerfile, docker-compose.yml, the Helm chart, the entrypoint) must
agree on: the entrypoint's roles and the environment every Throttle process receives."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "scripts" / "entrypoint.sh"

# Environment every Throttle process receives (design brief: "Environment").
REQUIRED_ENV = {
    "DATABASE_URL",
    "REDIS_URL",
    "HUBSPOT_CLIENT_ID",
    "HUBSPOT_CLIENT_SECRET",
    "HUBSPOT_API_BASE",
    "HUBSPOT_APP_BASE",
    "PUBLIC_BASE_URL",
    "SECRET_KEY",
    "TOKEN_ENCRYPTION_KEY",
    "CONFIG_API_TOKEN",
    "THROTTLE_DASHBOARD_PASSWORD",
    "THROTTLE_METRICS_TOKEN",
}


def entrypoint_roles() -> set[str]:
    """The role patterns of the entrypoint's `case "${role}" in ... esac`."""
    text = ENTRYPOINT.read_text()
    match = re.search(r'^case "\$\{role\}" in\n(.*?)^esac', text, re.S | re.M)
    assert match, 'entrypoint.sh has no `case "${role}" in ... esac` block'
    return set(re.findall(r"^  ([a-z][a-z-]*)\)$", match.group(1), re.M))
