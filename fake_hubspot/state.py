"""The fake's shared state: settings, OAuth grants, rate windows, completions and call counts.

One re-entrant lock guards all of it; endpoint handlers hold ``hub.lock`` while they decide and
record, and never while they sleep.
"""

from __future__ import annotations

import copy
import random
import threading
from collections import Counter, defaultdict
from typing import Any

from fake_hubspot.ratelimit import RollingWindow
from fake_hubspot.settings import Settings, updated
from fake_hubspot.tokens import TokenStore

DEFAULT_SCOPES = ("automation", "oauth")


class Hub:
    """Everything the fake remembers between requests."""

    def __init__(self, client_id: str, client_secret: str, defaults: Settings) -> None:
        self.lock = threading.RLock()
        self.stopping = threading.Event()  # set on stop: cuts simulated latency short
        self.client_id = client_id
        self.client_secret = client_secret
        self.defaults = copy.deepcopy(defaults)
        self.settings = copy.deepcopy(defaults)
        self.rng = random.Random(defaults.seed)
        self.tokens = TokenStore()
        self.limiter = RollingWindow()
        # The app's custom-action definitions (definitions.py), by id: like the issued tokens,
        # they outlive reset()
        self.definitions: dict[str, dict[str, Any]] = {}
        self.last_definition_id = 259551800
        self._clear_records()

    def _clear_records(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.calls: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.token_calls: Counter[str] = Counter()
        self.batch_sizes: list[int] = []
        self.rate_limited = 0
        self.last_batch_id = 0
        self.fault_calls = 0  # callback calls that reached the fault checks (for fail_every)

    # Recording (callers hold the lock)

    def record_call(self, endpoint: str, status: int) -> None:
        """Count one answered call."""
        with self.lock:
            self.calls[endpoint][str(status)] += 1

    def next_batch_id(self) -> int:
        """A new id for one completing call."""
        self.last_batch_id += 1
        return self.last_batch_id

    # Read-outs and controls (the Python API and /_fake/ mirror these)

    def completions(
        self, callback_id: str | None = None, portal_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Every completion recorded so far, oldest first, optionally filtered."""
        with self.lock:
            return [
                copy.deepcopy(record)
                for record in self.records
                if (callback_id is None or record["callback_id"] == callback_id)
                and (portal_id is None or record["portal_id"] == portal_id)
            ]

    def stats(self) -> dict[str, Any]:
        """Call counts by endpoint and status, 429s, batch sizes and token calls by grant type."""
        with self.lock:
            return {
                "calls": {name: dict(counts) for name, counts in sorted(self.calls.items())},
                "requests": sum(sum(counts.values()) for counts in self.calls.values()),
                "rate_limited": self.rate_limited,
                "batch_sizes": list(self.batch_sizes),
                "completions": len(self.records),
                "token_calls": dict(self.token_calls),
            }

    def action_definitions(self) -> list[dict[str, Any]]:
        """The app's custom-action definitions, oldest first."""
        with self.lock:
            return copy.deepcopy(list(self.definitions.values()))

    def faults(self) -> dict[str, Any]:
        """The current settings, JSON-ready."""
        with self.lock:
            return self.settings.to_json()

    def set_faults(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some settings (ValueError on an unknown key or bad value); returns them all."""
        with self.lock:
            self.settings = updated(self.settings, changes)
            if "seed" in changes:
                self.rng.seed(self.settings.seed)
            return self.settings.to_json()

    def reset(self, tokens: bool = False) -> None:
        """Forget completions, counts and rate windows; restore the starting settings.

        Issued tokens survive unless ``tokens`` is true.
        """
        with self.lock:
            self._clear_records()
            self.limiter.clear()
            self.settings = copy.deepcopy(self.defaults)
            self.rng.seed(self.settings.seed)
            if tokens:
                self.tokens.clear()

    def issue_tokens(
        self, portal_id: int | None = None, scopes: tuple[str, ...] = DEFAULT_SCOPES
    ) -> dict[str, Any]:
        """Install the app in a portal without the browser flow: a fresh token answer."""
        with self.lock:
            portal = self.settings.default_portal_id if portal_id is None else portal_id
            return self.tokens.issue(portal, tuple(scopes), self.settings.expires_in)

    def revoke_refresh_token(self, refresh_token: str) -> bool:
        """Uninstall: the refresh token and its access tokens stop working."""
        with self.lock:
            return self.tokens.revoke_refresh(refresh_token)

    def expire_access_token(self, access_token: str) -> bool:
        """Make an access token expire now."""
        with self.lock:
            return self.tokens.expire_access(access_token)
