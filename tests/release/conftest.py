"""Fixtures of the release engine's tests."""

from __future__ import annotations

import pytest

from tests.support.release_helpers import install_portal


@pytest.fixture
def engine_app(build, fake):
    """An app on the fake HubSpot with the portal installed, no release lead, and short waits."""
    app = build(
        release_lead_ms=0,
        max_inline_wait_seconds=0.5,
        http_read_timeout_seconds=2.0,
    )
    install_portal(app, fake)
    return app
