"""Fixtures of the devtools tests: the fake HubSpot with its own default credentials, and a
plain HTTP session to talk to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from fake_hubspot import FakeHubSpot


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    with FakeHubSpot() as server:
        yield server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
