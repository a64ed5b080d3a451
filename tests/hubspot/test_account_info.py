"""The account-details call against the fake HubSpot: the zone it reads and checks, its typed
failures, and that it takes a token from the portal's bucket like every HubSpot call."""

from __future__ import annotations

import dataclasses
import time

import pytest

from fake_hubspot import FakeHubSpot
from tests.conftest import service_env
from tests.support.log_capture import captured
from tests.support.processes import free_port
from throttle_app.config import Settings
from throttle_app.hubspot import account_info
from throttle_app.hubspot.account_info import (
    AccountInfoBadAnswer,
    known_time_zone,
    read_account_details,
)
from throttle_app.hubspot.bucket import TokenBucket
from throttle_app.hubspot.callbacks import (
    BucketWait,
    HubSpotClient,
    NotSent,
    Refused,
    Transient,
    Unauthorized,
)
from throttle_app.telemetry.worker_metrics import RedisMetrics

PORTAL = 50467010


@pytest.fixture
def client(redis_conn, fake) -> HubSpotClient:
    return make_client(redis_conn, hubspot_api_base=fake.base_url)


def make_client(redis_conn, **overrides) -> HubSpotClient:
    settings = dataclasses.replace(Settings.from_env(service_env()), **overrides)
    bucket = TokenBucket(redis_conn, settings.bucket_capacity, settings.bucket_refill_per_second)
    return HubSpotClient(settings, bucket, RedisMetrics(redis_conn))


def token(fake, portal_id: int = PORTAL, scopes=("automation", "oauth")) -> str:
    return fake.issue_tokens(portal_id, scopes)["access_token"]


def test_reads_the_portals_zone_and_details(client, fake):
    details = read_account_details(client, PORTAL, token(fake))
    assert details.portal_id == PORTAL
    assert details.time_zone == "America/New_York"
    assert details.utc_offset in ("-05:00", "-04:00")
    assert details.ui_domain == "app.hubspot.com"
    assert fake.stats()["calls"]["account_info"] == {"200": 1}


@pytest.mark.parametrize(
    "zone", ["US/Eastern", "Asia/Kolkata", "America/Argentina/Buenos_Aires", "UTC", "Etc/GMT+5"]
)
def test_every_zone_zoneinfo_loads_is_kept_as_sent(client, fake, zone):
    """Legacy aliases such as US/Eastern are real IANA names: kept as HubSpot spells them."""
    fake.set_faults(default_time_zone=zone)
    assert read_account_details(client, PORTAL, token(fake)).time_zone == zone


@pytest.mark.parametrize(
    "zone",
    ["Mars/Olympus_Mons", "America", "localtime", "posixrules", "../../etc/passwd", "x" * 70],
)
def test_a_zone_we_cannot_load_is_unknown_and_logged(client, fake, zone):
    fake.set_faults(default_time_zone=zone)
    with captured(account_info.__name__) as logs:
        details = read_account_details(client, PORTAL, token(fake))
    assert details.time_zone is None
    assert details.reported_time_zone == zone[:64]
    (record,) = logs.records
    assert "time zone we do not know" in record.getMessage()
    assert (record.levelname, record.portal_id, record.time_zone) == ("WARNING", PORTAL, zone[:64])


@pytest.mark.parametrize(
    "value",
    [None, "", 5, ["UTC"], "America/New_York\x00", "/etc/localtime", "America/", " UTC", "a/b/c/d"],
)
def test_known_time_zone_refuses_what_is_not_a_zone_name(value):
    assert known_time_zone(value) is None


def test_an_unreachable_hubspot_is_not_sent(redis_conn):
    client = make_client(redis_conn, hubspot_api_base=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(NotSent):
        read_account_details(client, PORTAL, "any-token")


def test_a_5xx_is_transient(client, fake):
    fake.set_faults(account_info_status=503)
    with pytest.raises(Transient):
        read_account_details(client, PORTAL, token(fake))


def test_a_slow_answer_times_out(redis_conn, fake):
    client = make_client(redis_conn, hubspot_api_base=fake.base_url, http_read_timeout_seconds=0.2)
    fake.set_faults(account_info_latency=1.0)
    started = time.monotonic()
    with pytest.raises(Transient):
        read_account_details(client, PORTAL, token(fake))
    assert time.monotonic() - started < 0.9


def test_a_missing_scope_is_refused(client, fake):
    with pytest.raises(Refused) as caught:
        read_account_details(client, PORTAL, token(fake, scopes=("automation",)))
    assert caught.value.status == 403


def test_a_dead_token_is_unauthorized(client, fake):
    access = token(fake)
    fake.expire_access_token(access)
    with pytest.raises(Unauthorized):
        read_account_details(client, PORTAL, access)


def test_another_portals_details_are_a_bad_answer(client, fake):
    with pytest.raises(AccountInfoBadAnswer):
        read_account_details(client, PORTAL, token(fake, portal_id=PORTAL + 1))


def test_the_call_takes_a_token_from_the_portals_bucket(client, fake, redis_conn):
    access = token(fake)
    bucket = client._bucket
    bucket.block(PORTAL, 30.0)  # the portal's bucket is empty for everyone
    with pytest.raises(BucketWait):
        read_account_details(client, PORTAL, access, deadline=time.monotonic() + 13.5)
    assert "account_info" not in fake.stats()["calls"]  # no call was made
    redis_conn.delete(bucket.key(PORTAL))  # full again
    read_account_details(client, PORTAL, access)
    assert bucket.wait_time(PORTAL) == 0  # one token of ten taken, nine left
    assert fake.stats()["calls"]["account_info"] == {"200": 1}


def test_hubspots_rate_headers_tighten_the_portals_bucket(redis_conn):
    """Like every call: HubSpot says no call is left in its window, so the next call waits."""
    with FakeHubSpot(rate_limit=1, rate_window=5.0) as fake:
        client = make_client(redis_conn, hubspot_api_base=fake.base_url)
        access = token(fake)
        read_account_details(client, PORTAL, access)
        assert 4 < client._bucket.wait_time(PORTAL) <= 5
        with pytest.raises(BucketWait):
            read_account_details(client, PORTAL, access)
        assert fake.stats()["calls"]["account_info"] == {"200": 1}
