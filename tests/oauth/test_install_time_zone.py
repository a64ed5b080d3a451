"""The portal's time zone at install, end to end: the browser flow through our real OAuth
callback, the fake HubSpot's account details, the row; and an install that succeeds whatever
the account details call does, the zone then learned by the cleaner."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import CONFIG_AUTH
from tests.support.oauth_helpers import PORTAL, install, raw_row, sql
from throttle_app.extensions import db
from throttle_app.oauth.time_zones import portal_time_zone
from throttle_app.release import cleaner
from throttle_app.services import services_of


def clean_pass(app) -> cleaner.CleanReport:
    """One cleaner pass as the scheduled job runs it, time zones included."""
    services = services_of(app)
    with app.app_context():
        try:
            return cleaner.clean(db.session, services.schedule, timedelta(0), zones=services.zones)
        finally:
            db.session.remove()


def test_the_portals_zone_is_learned_at_install(app, client, fake):
    """Issue 11's done-when: the portal's zone learned at install, through the real callback."""
    fake.set_faults(time_zones={PORTAL: "Asia/Kolkata"})
    response = install(client, Accept="application/json")
    assert response.status_code == 200
    assert response.json["status"] == "connected" and response.json["time_zone"] == "Asia/Kolkata"
    row = raw_row(PORTAL)
    assert row["time_zone"] == "Asia/Kolkata"
    assert timedelta(0) <= row["time_zone_checked_at"] - row["updated_at"] < timedelta(seconds=5)
    assert fake.stats()["calls"]["account_info"] == {"200": 1}
    with app.app_context():
        assert portal_time_zone(db.session, PORTAL) == "Asia/Kolkata"
        db.session.remove()
    assert clean_pass(app).time_zones_asked == 0  # asked at install: not due for a day


@pytest.mark.parametrize(
    "fault",
    [
        {"account_info_status": 503},
        {"account_info_status": 500},
        {"account_info_status": 403},  # the app lacks the scope
        {"account_info_status": 401},
        {"account_info_latency": 2.0},  # slower than the read timeout
        {"default_time_zone": "Mars/Olympus_Mons"},  # a zone we cannot load
    ],
    ids=["503", "500", "403-missing-scope", "401", "timeout", "unknown-zone"],
)
def test_the_install_succeeds_when_the_account_details_fail(build, fake, fault):
    client = build(http_read_timeout_seconds=0.5).test_client()
    fake.set_faults(**fault)
    response = install(client)
    assert response.status_code == 200
    assert "Throttle is installed" in response.get_data(as_text=True)
    row = raw_row(PORTAL)
    assert row["disconnected_at"] is None and row["time_zone"] is None  # UTC until known
    answered = "default_time_zone" in fault  # HubSpot answered: asked again in a day
    assert (row["time_zone_checked_at"] is not None) == answered


def test_the_first_cleaner_pass_after_a_failed_install_learns_the_zone(app, client, fake):
    fake.set_faults(account_info_status=503)
    assert install(client, Accept="application/json").json["time_zone"] is None
    fake.set_faults(account_info_status=None)
    assert clean_pass(app).time_zones_asked == 1
    assert raw_row(PORTAL)["time_zone"] == "America/New_York"


def test_while_hubspot_keeps_failing_the_cleaner_asks_hourly(app, client, fake):
    fake.set_faults(account_info_status=503)
    install(client)
    assert clean_pass(app).time_zones_asked == 1
    assert clean_pass(app).time_zones_asked == 0  # not before an hour has passed
    assert raw_row(PORTAL)["time_zone"] is None
    fake.set_faults(account_info_status=None, default_time_zone="Europe/Berlin")
    sql("UPDATE oauth_tokens SET time_zone_checked_at = time_zone_checked_at - interval '1 hour'")
    assert clean_pass(app).time_zones_asked == 1
    assert raw_row(PORTAL)["time_zone"] == "Europe/Berlin"


def test_a_reinstall_that_cannot_ask_keeps_the_known_zone(app, client, fake):
    fake.set_faults(default_time_zone="Europe/Berlin")
    assert install(client).status_code == 200
    fake.set_faults(account_info_status=502)
    assert install(client, Accept="application/json").json["time_zone"] is None
    assert raw_row(PORTAL)["time_zone"] == "Europe/Berlin"


def test_operators_see_the_zone(app, client, fake):
    fake.set_faults(time_zones={PORTAL: "America/Chicago"})
    install(client)
    (portal,) = client.get("/api/oauth/portals", headers=CONFIG_AUTH).json["portals"]
    assert portal["time_zone"] == "America/Chicago" and portal["time_zone_checked_at"]
    line = app.test_cli_runner().invoke(args=["throttle", "portals"]).output
    assert f"{PORTAL}  portal-{PORTAL}.example.com  connected" in line
    assert "zone America/Chicago" in line


def test_operators_see_when_the_zone_is_not_known(app, client, fake):
    fake.set_faults(account_info_status=503)
    install(client)
    line = app.test_cli_runner().invoke(args=["throttle", "portals"]).output
    assert "zone UTC (time zone not known yet)" in line
