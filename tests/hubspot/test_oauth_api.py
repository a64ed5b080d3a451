"""HubSpot's token answers, read defensively: odd numbers never become a 500 or an overflow."""

from __future__ import annotations

import pytest

from tests.conftest import service_env
from throttle_app.config import Settings
from throttle_app.hubspot import oauth_api
from throttle_app.input_fields import bigint


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1800, 1800),
        ("1800", 1800),
        (" 42 ", 42),
        ("\u00b2", None),  # "²" passes str.isdigit(), int() refuses it
        ("9" * 5000, None),  # int() refuses over 4300 digits
        (2**63, None),  # beyond a bigint (hub_id is stored as one)
        (-5, None),
        (True, None),
        (1.5, None),
    ],
)
def test_integers_in_answers(value, expected):
    assert bigint(value) == expected  # what oauth_api reads hub_id, app_id, expires_in with


def test_a_huge_expires_in_is_capped_instead_of_overflowing(monkeypatch):
    answer = {"access_token": "at", "refresh_token": "rt", "expires_in": 10**15, "hub_id": 7}
    monkeypatch.setattr(oauth_api, "_post_form", lambda settings, path, form: answer)
    grant = oauth_api.refresh(Settings.from_env(service_env()), "rt")
    assert grant.expires_in == oauth_api.MAX_EXPIRES_IN_SECONDS
    assert grant.expires_at > grant.issued_at
