"""The fake HubSpot's account details (GET /account-info/v3/details) over real HTTP: the
portal's zone, the bearer token and scope checks, the rate window, and the injected failures."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from fake_hubspot import FakeHubSpot

DETAILS = "/account-info/v3/details"


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def details(
    http: requests.Session, fake: FakeHubSpot, tokens: dict[str, Any], timeout: float = 5
) -> requests.Response:
    return http.get(fake.base_url + DETAILS, headers=bearer(tokens), timeout=timeout)


def test_answers_the_portals_details_with_the_default_zone(fake, http):
    answer = details(http, fake, fake.issue_tokens(31))
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert body["portalId"] == 31 and body["timeZone"] == "America/New_York"
    assert body["utcOffset"] in ("-05:00", "-04:00")  # EST or EDT, whatever today is
    assert body["utcOffsetMilliseconds"] in (-18_000_000, -14_400_000)
    assert {"accountType", "companyCurrency", "uiDomain", "dataHostingLocation"} <= set(body)
    assert fake.stats()["calls"]["account_info"] == {"200": 1}


def test_each_portal_can_have_its_own_zone_and_the_default_can_change(fake, http):
    fake.set_faults(time_zones={41: "Asia/Kolkata", "42": "US/Eastern"})
    assert details(http, fake, fake.issue_tokens(41)).json()["timeZone"] == "Asia/Kolkata"
    assert details(http, fake, fake.issue_tokens(41)).json()["utcOffset"] == "+05:30"
    assert details(http, fake, fake.issue_tokens(42)).json()["timeZone"] == "US/Eastern"
    fake.set_faults(default_time_zone="Europe/Berlin")
    assert details(http, fake, fake.issue_tokens(43)).json()["timeZone"] == "Europe/Berlin"
    fake.set_faults(default_time_zone="Mars/Olympus_Mons")  # any text: HubSpot may surprise us
    body = details(http, fake, fake.issue_tokens(43)).json()
    assert (body["timeZone"], body["utcOffset"]) == ("Mars/Olympus_Mons", "+00:00")
    fake.reset()
    assert details(http, fake, fake.issue_tokens(41)).json()["timeZone"] == "America/New_York"


def test_the_date_versioned_path_answers_the_same(fake, http):
    url = fake.base_url + "/account-info/2026-03/details"
    answer = http.get(url, headers=bearer(fake.issue_tokens(7)), timeout=5)
    assert answer.status_code == 200 and answer.json()["portalId"] == 7


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}],
)
def test_needs_a_valid_bearer_token(fake, http, headers):
    answer = http.get(fake.base_url + DETAILS, headers=headers, timeout=5)
    assert answer.status_code == 401
    assert answer.json()["category"] == "INVALID_AUTHENTICATION"
    assert "timeZone" not in answer.text


def test_an_expired_or_revoked_token_is_refused(fake, http):
    tokens = fake.issue_tokens()
    fake.expire_access_token(tokens["access_token"])
    answer = details(http, fake, tokens)
    assert (answer.status_code, answer.json()["category"]) == (401, "EXPIRED_AUTHENTICATION")
    other = fake.issue_tokens()
    fake.revoke_refresh_token(other["refresh_token"])
    assert details(http, fake, other).status_code == 401


def test_needs_the_oauth_scope(fake, http):
    answer = details(http, fake, fake.issue_tokens(9, scopes=("automation",)))
    assert answer.status_code == 403
    assert answer.json()["category"] == "MISSING_SCOPES"


def test_only_get_is_allowed(fake, http):
    answer = http.post(fake.base_url + DETAILS, headers=bearer(fake.issue_tokens()), timeout=5)
    assert answer.status_code == 405


def test_counts_toward_the_portals_rate_window(http):
    with FakeHubSpot(rate_limit=2, rate_window=5.0) as fake:
        tokens = fake.issue_tokens()
        codes = [details(http, fake, tokens).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert details(http, fake, tokens).headers["Retry-After"]


@pytest.mark.parametrize(
    ("status", "category"), [(503, None), (500, "INTERNAL_ERROR"), (403, "ERROR")]
)
def test_can_be_made_to_fail_with_any_error_status(fake, http, status, category):
    tokens = fake.issue_tokens()
    fake.set_faults(account_info_status=status)
    answer = details(http, fake, tokens)
    assert answer.status_code == status
    if category:
        assert answer.json()["category"] == category
    fake.set_faults(account_info_status=None)
    assert details(http, fake, tokens).status_code == 200


def test_latency_delays_the_answer(fake, http):
    tokens = fake.issue_tokens()
    fake.set_faults(account_info_latency=0.4)
    with pytest.raises(requests.ReadTimeout):
        details(http, fake, tokens, timeout=0.2)
    started = time.monotonic()
    assert details(http, fake, tokens).status_code == 200
    assert time.monotonic() - started >= 0.4


@pytest.mark.parametrize(
    "changes",
    [
        {"account_info_status": 200},
        {"account_info_status": "503"},
        {"time_zones": {"x": "UTC"}},
        {"time_zones": {1: ""}},
        {"time_zones": ["UTC"]},
        {"default_time_zone": 5},
        {"account_info_latency": -1},
    ],
)
def test_bad_settings_are_refused(fake, changes):
    with pytest.raises(ValueError):
        fake.set_faults(**changes)


def test_zones_and_failures_can_be_set_over_http(fake, http):
    base = fake.base_url + "/_fake"
    answer = http.post(base + "/faults", json={"time_zones": {"31": "Europe/Berlin"}}).json()
    assert answer["time_zones"] == {"31": "Europe/Berlin"}
    seeded = http.post(base + "/portals", json={"portal_id": 31}).json()
    assert details(http, fake, seeded).json()["timeZone"] == "Europe/Berlin"
    http.post(base + "/faults", json={"account_info_status": 502})
    assert details(http, fake, seeded).status_code == 502
