"""The portals' time zones: what the policies read, what an install learns, and the cleaner's
daily refresh (due or not, disconnected portals skipped, changes applied, failures retried later
without losing the zone, bounded per pass)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from tests.support.log_capture import captured
from tests.support.oauth_helpers import raw_row, sql
from tests.support.processes import free_port
from tests.support.release_helpers import install_portal
from throttle_app.extensions import db
from throttle_app.oauth import time_zones
from throttle_app.oauth.time_zones import portal_time_zone
from throttle_app.oauth.tokens import mark_disconnected
from throttle_app.services import services_of

PORTAL = 50467010
OTHERS = (50467011, 50467012, 50467013, 50467014)


def set_zone(portal_id: int, zone: str | None, checked_ago: timedelta | None) -> None:
    """Store a zone as if it had been asked `checked_ago` (None: never asked)."""
    sql(
        "UPDATE oauth_tokens SET time_zone = %s, time_zone_checked_at = now() - %s::interval"
        " WHERE portal_id = %s",
        zone,
        checked_ago,
        portal_id,
    )


def zone_of(portal_id: int) -> tuple[str | None, datetime | None]:
    row = raw_row(portal_id)
    return row["time_zone"], row["time_zone_checked_at"]


def checked_ago(portal_id: int) -> timedelta:
    (ago,) = sql(
        "SELECT now() - time_zone_checked_at FROM oauth_tokens WHERE portal_id = %s", portal_id
    )[0]
    return ago


def refresh(app) -> int:
    with app.app_context():
        return services_of(app).zones.refresh_due()


def asks(fake) -> int:
    return sum(fake.stats()["calls"].get("account_info", {}).values())


@pytest.fixture
def app(build, fake):
    app = build()
    install_portal(app, fake)
    return app


def test_portal_time_zone_is_the_stored_zone_or_none(app, fake):
    with app.app_context():
        assert portal_time_zone(db.session, PORTAL) is None  # installed, never asked: UTC
        assert portal_time_zone(db.session, 999) is None  # no install at all
        assert services_of(app).zones.learn(PORTAL) == "America/New_York"
        assert portal_time_zone(db.session, PORTAL) == "America/New_York"
        mark_disconnected(PORTAL, "test")
        assert portal_time_zone(db.session, PORTAL) == "America/New_York"  # kept
        db.session.remove()


def test_learn_stores_the_zone_and_when_it_was_asked(app, fake):
    fake.set_faults(default_time_zone="Europe/Berlin")
    with app.app_context():
        assert services_of(app).zones.learn(PORTAL) == "Europe/Berlin"
    zone, _ = zone_of(PORTAL)
    assert zone == "Europe/Berlin" and checked_ago(PORTAL) < timedelta(seconds=5)


@pytest.mark.parametrize("fault", [{"account_info_status": 503}, {"account_info_status": 403}])
def test_learn_never_raises_and_leaves_the_zone_unknown_for_the_cleaner(app, fake, fault):
    fake.set_faults(**fault)
    with app.app_context(), captured(time_zones.__name__) as logs:
        assert services_of(app).zones.learn(PORTAL) is None
    assert zone_of(PORTAL) == (None, None)  # the cleaner's next pass asks first
    assert "could not learn" in logs.messages[0]
    fake.set_faults(account_info_status=None)
    assert refresh(app) == 1
    assert zone_of(PORTAL)[0] == "America/New_York"


def test_learn_for_a_portal_without_install_is_none(app, fake):
    with app.app_context():
        assert services_of(app).zones.learn(999) is None
    assert asks(fake) == 0


def test_only_portals_due_are_asked(build, fake):
    app = build(time_zone_refresh_batch=3)
    install_portal(app, fake)
    for portal in OTHERS[:2]:
        install_portal(app, fake, portal)
    fake.set_faults(time_zones={PORTAL: "Europe/Berlin", OTHERS[0]: "Asia/Kolkata"})
    set_zone(PORTAL, None, None)  # never asked
    set_zone(OTHERS[0], "America/New_York", timedelta(hours=24, minutes=1))  # a day ago
    set_zone(OTHERS[1], "America/Chicago", timedelta(hours=23))  # not yet
    assert refresh(app) == 2
    assert zone_of(PORTAL)[0] == "Europe/Berlin"
    assert zone_of(OTHERS[0])[0] == "Asia/Kolkata"
    assert checked_ago(PORTAL) < timedelta(seconds=5) > checked_ago(OTHERS[0])
    assert zone_of(OTHERS[1])[0] == "America/Chicago"
    assert checked_ago(OTHERS[1]) >= timedelta(hours=23)
    assert asks(fake) == 2
    assert refresh(app) == 0 and asks(fake) == 2  # nothing due any more


def test_disconnected_portals_are_never_asked(app, fake):
    with app.app_context():
        mark_disconnected(PORTAL, "BAD_REFRESH_TOKEN: test")
    assert refresh(app) == 0
    assert asks(fake) == 0 and zone_of(PORTAL) == (None, None)


def test_a_change_is_applied_and_logged(app, fake):
    set_zone(PORTAL, "America/New_York", timedelta(days=2))
    fake.set_faults(default_time_zone="Europe/Berlin")
    with captured(time_zones.__name__) as logs:
        assert refresh(app) == 1
    assert zone_of(PORTAL)[0] == "Europe/Berlin"
    (record,) = logs.records
    assert record.getMessage() == "portal time zone changed"
    assert (record.portal_id, record.time_zone, record.previous_time_zone) == (
        PORTAL,
        "Europe/Berlin",
        "America/New_York",
    )


def test_the_same_zone_again_logs_nothing(app, fake):
    set_zone(PORTAL, "America/New_York", timedelta(days=2))
    with captured(time_zones.__name__) as logs:
        assert refresh(app) == 1
    assert logs.records == [] and checked_ago(PORTAL) < timedelta(seconds=5)


@pytest.mark.parametrize("status", [503, 403, 401])
def test_a_failure_keeps_the_zone_and_is_retried_an_hour_later(app, fake, status):
    set_zone(PORTAL, "America/Chicago", timedelta(days=2))
    fake.set_faults(account_info_status=status)
    assert refresh(app) == 1
    zone, _ = zone_of(PORTAL)
    assert zone == "America/Chicago"
    assert timedelta(hours=23) <= checked_ago(PORTAL) < timedelta(hours=23, seconds=5)
    assert refresh(app) == 0  # not before the hour
    fake.set_faults(account_info_status=None)
    sql("UPDATE oauth_tokens SET time_zone_checked_at = time_zone_checked_at - interval '1 hour'")
    assert refresh(app) == 1
    assert zone_of(PORTAL)[0] == "America/New_York"


def test_a_zone_we_do_not_know_keeps_the_stored_one(app, fake):
    set_zone(PORTAL, "America/Chicago", timedelta(days=2))
    fake.set_faults(default_time_zone="Mars/Olympus_Mons")
    assert refresh(app) == 1
    assert zone_of(PORTAL)[0] == "America/Chicago"
    assert checked_ago(PORTAL) < timedelta(seconds=5)  # HubSpot answered: asked again tomorrow


def test_a_pass_asks_at_most_the_batch_never_asked_first(build, fake):
    app = build(time_zone_refresh_batch=2)
    for portal in (PORTAL, *OTHERS):
        install_portal(app, fake, portal)
    for number, portal in enumerate((PORTAL, *OTHERS[:2])):
        set_zone(portal, "UTC", timedelta(days=3 - number))
    assert refresh(app) == 2
    asked = {p for p in (PORTAL, *OTHERS) if zone_of(p)[0] == "America/New_York"}
    assert asked == set(OTHERS[2:])  # never asked (NULL) comes before a day overdue
    assert refresh(app) == 2
    assert refresh(app) == 1
    assert refresh(app) == 0
    assert asks(fake) == 5


def test_the_default_pass_asks_one_portal(app, fake):
    install_portal(app, fake, OTHERS[0])
    assert (refresh(app), refresh(app), refresh(app)) == (1, 1, 0)


def test_batch_zero_turns_the_refresh_off(build, fake):
    app = build(time_zone_refresh_batch=0)
    install_portal(app, fake)
    assert refresh(app) == 0 and asks(fake) == 0


def test_an_unreachable_hubspot_ends_the_pass_after_one_ask(build, fake):
    app = build(hubspot_api_base=f"http://127.0.0.1:{free_port()}", time_zone_refresh_batch=3)
    for portal in (PORTAL, *OTHERS[:2]):
        install_portal(app, fake, portal)
    with captured(time_zones.__name__) as logs:
        assert refresh(app) == 1
    assert "stopped for this pass" in logs.messages[0]
    never_asked = [p for p in (PORTAL, *OTHERS[:2]) if zone_of(p)[1] is None]
    assert len(never_asked) == 2  # still first in line for the next pass


def test_a_slow_hubspot_costs_one_read_timeout_per_pass(build, fake):
    app = build(http_read_timeout_seconds=0.3, time_zone_refresh_batch=3)
    for portal in OTHERS[:3]:
        install_portal(app, fake, portal)
    fake.set_faults(account_info_latency=2.0)
    started = time.monotonic()
    assert refresh(app) == 1
    assert time.monotonic() - started < 1.5
