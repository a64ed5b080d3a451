"""/ops, the operator page, through Flask's test client: who may see it, what it shows, and
that its forms act only with the session's CSRF token."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.ops_helpers import OPS_PASSWORD, held_queue, portal
from tests.support.processes import free_port
from tests.support.release_helpers import query
from throttle_app.extensions import db
from throttle_app.ops import ops_listing
from throttle_app.release.sending import ReleaseReport
from throttle_app.services import services_of

AUTH = {"Authorization": "Basic " + base64.b64encode(f"admin:{OPS_PASSWORD}".encode()).decode()}
SAFE, RISKY, OTHER = "111:1:1", "111:2:1", "222:3:1"


@pytest.fixture
def ops_app(make_app):
    app = make_app(dashboard_password=OPS_PASSWORD)
    now = datetime.now(UTC)
    portal(app, 111, time_zone="Europe/Berlin")
    portal(app, 222, connected=False)
    held_queue(app, SAFE, 3, (10, 60), now + timedelta(days=20))
    # 500 at 10 per hour drain in 49 hours; the oldest hold ends in 5.
    held_queue(app, RISKY, 500, (10, 3600), now + timedelta(hours=5))
    held_queue(app, OTHER, 2, (1, 60), now + timedelta(days=3))
    return app


def queue_of(app, key: str) -> int:
    return query(app, "SELECT id FROM throttle_queues WHERE queue_key = :k", k=key)[0][0]


def paused(app, key: str) -> bool:
    return query(app, "SELECT paused FROM throttle_queues WHERE queue_key = :k", k=key)[0][0]


def token_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_closed_without_a_dashboard_password(make_app):
    client = make_app().test_client()
    assert client.get("/ops", headers=AUTH).status_code == 404
    assert client.post("/ops/queues/1/pause", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + base64.b64encode(b"admin:wrong").decode()},
        {"Authorization": "Basic " + base64.b64encode(f"root:{OPS_PASSWORD}".encode()).decode()},
        {"Authorization": f"Bearer {OPS_PASSWORD}"},
    ],
)
def test_refused_without_the_operator_credentials(ops_app, headers):
    client = ops_app.test_client()
    page = client.get("/ops", headers=headers)
    assert page.status_code == 401 and page.headers["WWW-Authenticate"].startswith("Basic ")
    assert SAFE not in page.get_data(as_text=True)
    token = token_of(client.get("/ops", headers=AUTH).get_data(as_text=True))
    queue = queue_of(ops_app, SAFE)
    answer = client.post(f"/ops/queues/{queue}/pause", headers=headers, data={"csrf_token": token})
    assert answer.status_code == 401 and not paused(ops_app, SAFE)


def test_the_page_shows_portals_queues_risk_and_charts(ops_app):
    services_of(ops_app).metrics.count_releases(ReleaseReport(completed=7), queue_of(ops_app, SAFE))
    answer = ops_app.test_client().get("/ops", headers=AUTH)
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    html = answer.get_data(as_text=True)
    assert '<meta name="viewport"' in html
    # Portals: installed with its zone, and disconnected.
    assert "Europe/Berlin" in html and "disconnected" in html
    # The risky queue comes first, flagged, with when its first record would expire.
    keys = re.findall(r'data-queue-key="([^"]+)"', html)
    assert keys == [RISKY, SAFE, OTHER]  # grouped by portal, the riskiest portal first
    risky = html.split(f'data-queue-key="{RISKY}"')[1].split("</section>")[0]
    assert "at risk" in risky and "would expire unthrottled at" in risky
    assert "10 per 1 h" in risky and ">500<" in risky
    safe = html.split(f'data-queue-key="{SAFE}"')[1].split("</section>")[0]
    assert "at risk" not in safe and "10 per 1 min" in safe
    assert "7 in the last hour" in safe and "<polyline points=" in safe
    assert "2 h old" in safe  # the oldest pending execution's age
    # The disconnected portal's queue never drains: at risk too.
    other = html.split(f'data-queue-key="{OTHER}"')[1].split("</section>")[0]
    assert "at risk" in other and "never: the portal cannot release" in other
    assert "2 at risk" in html


def test_pause_resume_and_drain_with_the_session_token(ops_app, redis_conn):
    client = ops_app.test_client()
    token = token_of(client.get("/ops", headers=AUTH).get_data(as_text=True))
    queue = queue_of(ops_app, SAFE)
    answer = client.post(f"/ops/queues/{queue}/pause", headers=AUTH, data={"csrf_token": token})
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/ops")
    assert paused(ops_app, SAFE)
    page = client.get("/ops", headers=AUTH).get_data(as_text=True)
    section = page.split(f'data-queue-key="{SAFE}"')[1].split("</section>")[0]
    assert "state-paused" in section and ">Resume<" in section
    client.post(f"/ops/queues/{queue}/resume", headers=AUTH, data={"csrf_token": token})
    assert not paused(ops_app, SAFE)
    client.post(f"/ops/queues/{queue}/drain", headers=AUTH, data={"csrf_token": token})
    assert query(ops_app, "SELECT draining FROM throttle_queues WHERE id = :i", i=queue)[0][0]


def test_a_post_without_a_valid_token_changes_nothing(ops_app, make_app):
    client = ops_app.test_client()
    queue = queue_of(ops_app, SAFE)
    client.get("/ops", headers=AUTH)  # this session has a token, the forms below do not
    stranger = ops_app.test_client()
    other_token = token_of(stranger.get("/ops", headers=AUTH).get_data(as_text=True))
    for data in (
        {},
        {"csrf_token": ""},
        {"csrf_token": "x" * 43},
        {"csrf_token": other_token},
        {"csrf_token": "y" * 5000},
    ):
        answer = client.post(f"/ops/queues/{queue}/pause", headers=AUTH, data=data)
        assert answer.status_code == 400, data
        assert "CSRF" in answer.get_json()["error"]
    # A browser without a session at all (a forged form on another site, no cookie).
    fresh = ops_app.test_client()
    answer = fresh.post(
        f"/ops/queues/{queue}/drain", headers=AUTH, data={"csrf_token": other_token}
    )
    assert answer.status_code == 400
    assert query(
        ops_app, "SELECT paused, draining FROM throttle_queues WHERE id = :i", i=queue
    ) == [(False, False)]


def test_unknown_queues_and_actions_are_404(ops_app):
    client = ops_app.test_client()
    token = token_of(client.get("/ops", headers=AUTH).get_data(as_text=True))
    assert (
        client.post(
            "/ops/queues/999999/pause", headers=AUTH, data={"csrf_token": token}
        ).status_code
        == 404
    )
    queue = queue_of(ops_app, SAFE)
    assert (
        client.post(
            f"/ops/queues/{queue}/delete", headers=AUTH, data={"csrf_token": token}
        ).status_code
        == 404
    )
    assert client.get(f"/ops/queues/{queue}/pause", headers=AUTH).status_code == 405


def test_pages_are_sorted_by_risk_then_backlog(ops_app):
    with ops_app.app_context():
        conn = services_of(ops_app).redis
        now = datetime.now(UTC)
        first = ops_listing.build_page(db.session, conn, now, page=1, page_size=2)
        second = ops_listing.build_page(db.session, conn, now, page=2, page_size=2)
        beyond = ops_listing.build_page(db.session, conn, now, page=99, page_size=2)
        only_222 = ops_listing.build_page(db.session, conn, now, portal_id=222)
        db.session.remove()
    keys = lambda view: [r.status.queue_key for g in view.groups for r in g.queues]  # noqa: E731
    # Both at-risk queues first (the soonest expiry first), then the safe one.
    assert keys(first) == [RISKY, OTHER] and keys(second) == [SAFE]
    assert first.pages == 2 and first.at_risk == 2 and first.backlog == 505
    assert keys(beyond) == [SAFE]
    assert keys(only_222) == [OTHER] and only_222.total_queues == 1


def test_junk_query_arguments_are_ignored(ops_app):
    client = ops_app.test_client()
    for query_string in ("page=-1", "page=abc", "page=" + "9" * 40, "portal=²", "page=0"):
        assert client.get(f"/ops?{query_string}", headers=AUTH).status_code == 200


def test_text_from_hubspot_is_escaped(ops_app):
    """Keys and failure reasons come from HubSpot's requests and answers: shown as text."""
    queue = queue_of(ops_app, SAFE)
    query(
        ops_app,
        "UPDATE action_executions SET last_failure_reason = '<script>alert(1)</script>'"
        " WHERE queue_id = :q",
        q=queue,
    )
    query(ops_app, "UPDATE throttle_queues SET queue_key = '111:1:<b>x' WHERE id = :q", q=queue)
    html = ops_app.test_client().get("/ops", headers=AUTH).get_data(as_text=True)
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "111:1:&lt;b&gt;x" in html


def test_the_page_answers_without_redis(make_app):
    """Redis down: the queues still show (PostgreSQL), the charts say they are unavailable."""
    app = make_app(
        dashboard_password=OPS_PASSWORD,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        redis_timeout_seconds=0.2,
    )
    held_queue(app, SAFE, 3, (10, 60), datetime.now(UTC) + timedelta(days=20))
    answer = app.test_client().get("/ops", headers=AUTH)
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assert SAFE in html and "release charts unavailable" in html
