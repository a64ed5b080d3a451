"""Create or update the Throttle action through HubSpot's v4 automation API, idempotently.

For apps on the older platform (a project upload does this for developer-platform apps). The
definitions API authenticates with the developer account's API key as the `hapikey` query
parameter (https://developers.hubspot.com/docs/api-reference/automation-actions-v4-v4/guide):
- `GET /automation/v4/actions/{appId}` lists the app's definitions (paged by `after`);
- `POST /automation/v4/actions/{appId}` creates one;
- `PATCH /automation/v4/actions/{appId}/{definitionId}` updates one.

`publish` finds the definition whose `actionUrl` is this deployment's and updates it, so a
second run never creates a second action (existing workflows keep pointing at the first). The
API key travels in the query string: no error message or exception here contains a URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from throttle_app.hubspot.app_definition import api_definition
from throttle_app.hubspot.http import error_message, hubspot_session
from throttle_app.telemetry.logs import REDACTED

DEFINITIONS_PATH = "/automation/v4/actions/{app_id}"
PAGE_LIMIT = 100
MAX_PAGES = 100  # 10,000 definitions: far beyond any app; stops a paging loop


class PublishError(Exception):
    """HubSpot refused or could not be reached; the message names no secret."""


@dataclass(frozen=True)
class PublishResult:
    action: str  # "created" or "updated"
    definition_id: str
    revision_id: str | None
    duplicates: list[str] = field(default_factory=list)  # other ids with our actionUrl


class ActionPublisher:
    """Talks to the definitions API of one app with one developer API key."""

    def __init__(
        self, api_base: str, app_id: int, api_key: str, timeout: tuple[float, float]
    ) -> None:
        self._url = api_base.rstrip("/") + DEFINITIONS_PATH.format(app_id=app_id)
        self._key = api_key
        self._timeout = timeout

    def publish(self, public_base_url: str) -> PublishResult:
        """Update the definition with our actionUrl, or create it when there is none."""
        body = api_definition(public_base_url)
        ours = [d for d in self.definitions() if d.get("actionUrl") == body["actionUrl"]]
        if not ours:
            created = self._call("POST", self._url, body)
            return PublishResult("created", str(created.get("id")), _revision(created))
        first, *others = sorted(ours, key=lambda d: str(d.get("id")))
        patch = {k: v for k, v in body.items() if k != "functions"}  # not part of the patch
        updated = self._call("PATCH", f"{self._url}/{first['id']}", patch)
        return PublishResult(
            "updated", str(first["id"]), _revision(updated), [str(d.get("id")) for d in others]
        )

    def definitions(self) -> Iterator[dict[str, Any]]:
        """Every definition of the app (archived ones excluded), page by page."""
        after: str | None = None
        for _ in range(MAX_PAGES):
            params = {"limit": str(PAGE_LIMIT)} | ({"after": after} if after else {})
            page = self._call("GET", self._url, None, params)
            results = page.get("results")
            for definition in results if isinstance(results, list) else []:
                if isinstance(definition, dict):
                    yield definition
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return
        raise PublishError(f"more than {MAX_PAGES} pages of action definitions")

    def _call(
        self, method: str, url: str, body: object, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        query = (params or {}) | {"hapikey": self._key}
        try:
            response = hubspot_session().request(
                method, url, params=query, json=body, timeout=self._timeout
            )
        except requests.RequestException as exc:  # its text holds the URL, hence the key
            raise PublishError(f"{method} failed: {type(exc).__name__}") from None
        if not response.ok:
            message = error_message(response).replace(self._key, REDACTED)
            raise PublishError(f"{method} answered HTTP {response.status_code}: {message}")
        try:
            payload = response.json() if response.content else {}
        except ValueError:
            status = response.status_code
            raise PublishError(f"{method} answered HTTP {status} without JSON") from None
        if not isinstance(payload, dict):
            raise PublishError(f"{method} answered an unexpected body")
        return payload


def _revision(definition: dict[str, Any]) -> str | None:
    revision = definition.get("revisionId")
    return None if revision is None else str(revision)
