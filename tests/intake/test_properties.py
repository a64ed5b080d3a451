"""Properties of the webhook, for generated bodies and headers, against the real database: the
execution request is never answered with a 5xx, a refusal is a JSON 4xx error, and a row is
stored only when the answer is 200 (and then it is there).

Bodies range from near-valid execution requests (every field replaced by generated values of
the right and wrong types, edge cases included) to arbitrary bytes; headers from a valid v2 or
v3 signature to missing, stale, malformed and wrongly versioned ones.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_CLIENT_SECRET, connect_test_database
from tests.support.hubspot_requests import ACTION_URL, execution_payload, signed_headers
from throttle_app.input_fields import storable_text

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

EDGE_TEXT = ["", " ", "\x00", "a\x00b", "\ud800", "x" * 256, "é" * 128, "50", "²", "1" * 5000]
texts = st.one_of(st.text(max_size=40), st.sampled_from(EDGE_TEXT))
numbers = st.one_of(
    st.integers(-3, 3),
    st.integers(1, 10**6),
    st.integers(2**63 - 2, 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([True, False, None]),
)
scalars = st.one_of(numbers, texts, numbers.map(str))
values = st.one_of(
    scalars, st.lists(scalars, max_size=2), st.dictionaries(texts, scalars, max_size=2)
)


# callback ids drawn from a small pool too, so redeliveries and cross-queue conflicts happen
valid_callback_ids = st.one_of(
    st.sampled_from([f"prop-{n}" for n in range(8)]),
    st.text(min_size=1, max_size=64).filter(lambda t: t.strip() and "\x00" not in t),
)


valid_ids = st.one_of(st.integers(1, 3), st.integers(1, 3).map(str))
valid_rates = st.one_of(st.integers(1, 100), st.integers(1, 100).map(str), st.just(50.0))
valid_periods = st.sampled_from(["second", "seconds", "minute", "minutes", "hours", "days"])


@st.composite
def execution_bodies(draw) -> bytes:
    """An execution request as HubSpot sends it (with generated ids, rates and callbackIds),
    half the time with one or two of its fields replaced, removed or retyped."""
    payload = execution_payload(
        callback_id="prop-0",
        workflow_id=draw(valid_ids),
        action_id=draw(st.one_of(valid_ids, st.none())),
        max_throughput=draw(valid_rates),
        time_value=draw(valid_rates),
        period=draw(valid_periods),
    )
    payload["callbackId"] = draw(valid_callback_ids)
    if draw(st.booleans()):
        for path in draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=2)):
            container, key = _parent(payload, path)
            if isinstance(container, dict):
                if draw(st.booleans()):
                    container.pop(key, None)
                else:
                    container[key] = draw(values)
    return json.dumps(payload, allow_nan=True).encode()


PATHS = [
    ("callbackId",),
    ("origin",),
    ("origin", "portalId"),
    ("origin", "actionDefinitionId"),
    ("origin", "actionExecutionIndexIdentifier"),
    ("origin", "actionExecutionIndexIdentifier", "actionExecutionIndex"),
    ("context",),
    ("context", "workflowId"),
    ("context", "actionId"),
    ("inputFields",),
    ("object",),
    ("object", "objectId"),
    ("object", "objectType"),
]


def _parent(payload: dict, path: tuple[str, ...]):
    container = payload
    for key in path[:-1]:
        container = container.get(key) if isinstance(container, dict) else None
    return container, path[-1]


bodies = st.one_of(
    execution_bodies(),
    execution_bodies(),
    execution_bodies(),
    st.binary(max_size=256),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 40_000).map(lambda depth: b"[" * depth + b"]" * depth),
)
SIGNINGS = [
    "v2",
    "v3",
    "v2",
    "v3",
    "v2",
    "v3",
    "v3-stale",
    "v3-bad-stamp",
    "v2-wrong-version",
    "v2-other-secret",
    "none",
]


def headers_for(body: bytes, signing: str, content_type: str | None) -> dict[str, str]:
    if signing == "v2":
        headers = signed_headers(body)
    elif signing == "v3":
        headers = signed_headers(body, "v3")
    elif signing == "v3-stale":
        headers = signed_headers(body, "v3", timestamp_ms=int((time.time() - 600) * 1000))
    elif signing == "v3-bad-stamp":
        headers = signed_headers(body, "v3")
        headers["X-HubSpot-Request-Timestamp"] = "²" + headers["X-HubSpot-Request-Timestamp"]
    elif signing == "v2-wrong-version":
        headers = signed_headers(body)
        headers["X-HubSpot-Signature-Version"] = "v1"
    elif signing == "v2-other-secret":
        headers = signed_headers(body, secret=TEST_CLIENT_SECRET + "x")
    else:
        headers = {"Content-Type": "application/json"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


@pytest.fixture
def rows():
    """(how many executions are stored, whether one callbackId is) straight from PostgreSQL."""
    conn = connect_test_database()
    conn.autocommit = True

    def look(callback_id: object) -> tuple[int, bool]:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*), count(*) FILTER (WHERE callback_id = %s) FROM action_executions",
                (
                    callback_id
                    if isinstance(callback_id, str) and storable_text(callback_id)
                    else None,
                ),
            )
            total, this = cur.fetchone()
        return total, this > 0

    yield look
    conn.close()


@PROPERTY_SETTINGS
@given(
    body=bodies,
    signing=st.sampled_from(SIGNINGS),
    content_type=st.one_of(st.none(), st.sampled_from(["text/plain", "", "application/json; x"])),
)
def test_never_a_5xx_and_never_a_row_without_a_200(client, rows, body, signing, content_type):
    try:
        callback_id = json.loads(body).get("callbackId")
    except (ValueError, UnicodeDecodeError, RecursionError, AttributeError):
        callback_id = None
    before, _ = rows(callback_id)
    answer = client.post(
        "/api/hubspot/action", data=body, headers=headers_for(body, signing, content_type)
    )
    after, stored = rows(callback_id)
    event(f"answered {answer.status_code}")  # pytest --hypothesis-show-statistics
    assert answer.status_code < 500, answer.get_data()[:200]
    assert answer.is_json
    if answer.status_code == 200:
        assert answer.get_json()["outputFields"]["hs_execution_state"] in (
            "BLOCK",
            "SUCCESS",
            "FAIL_CONTINUE",
        )
        assert stored, "answered 200 without the row"
    else:
        assert 400 <= answer.status_code < 500
        assert "error" in answer.get_json()
        assert after == before, f"answered {answer.status_code} and stored a row"
    if signing not in ("v2", "v3"):
        assert answer.status_code != 200, "an unsigned or badly signed request was accepted"


def test_the_generated_requests_reach_the_parser_and_the_database(client, rows):
    """The property above is not vacuous: a valid signed request through the same path is
    stored (the signing helper signs for ACTION_URL, the test client's URL)."""
    assert ACTION_URL.endswith("/api/hubspot/action")
    body = json.dumps(execution_payload(callback_id="prop-check")).encode()
    answer = client.post("/api/hubspot/action", data=body, headers=headers_for(body, "v2", None))
    assert answer.status_code == 200
    assert rows("prop-check") == (1, True)
