"""Fixtures of the OAuth tests: the app talks to the fake HubSpot (conftest's `build`)."""

from __future__ import annotations

import pytest
from flask import Flask


@pytest.fixture
def app(build) -> Flask:
    return build()


@pytest.fixture
def client(app: Flask):
    return app.test_client()
