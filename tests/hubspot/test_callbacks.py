"""The HubSpot client: how answers and failures are typed, Retry-After parsing, deadlines."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import requests

from tests.conftest import service_env
from tests.support.processes import free_port
from tests.support.release_helpers import PORTAL
from throttle_app.config import Settings
from throttle_app.hubspot.bucket import TokenBucket
from throttle_app.hubspot.callbacks import (
    BucketWait,
    HubSpotClient,
    NotSent,
    RateLimited,
    Refused,
    Rejected,
    TooLate,
    Transient,
)
from throttle_app.telemetry.worker_metrics import RedisMetrics

PAIRS = [("cb-1", {"hs_execution_state": "SUCCESS"})]


def make_client(redis_conn, bucket: TokenBucket | None = None, **overrides) -> HubSpotClient:
    settings = dataclasses.replace(Settings.from_env(service_env()), **overrides)
    return HubSpotClient(
        settings, bucket or TokenBucket(redis_conn, 10, 9.5), RedisMetrics(redis_conn)
    )


def answer(status: int, body: object = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body if body is not None else {}).encode()
    return response


@pytest.mark.parametrize("header", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_non_finite_retry_after_uses_the_default(redis_conn, header):
    client = make_client(redis_conn, retry_after_default_seconds=7.0)
    assert client.retry_after(header) == 7.0


def test_a_429_with_retry_after_nan_blocks_the_bucket_for_the_default(redis_conn):
    client = make_client(redis_conn, retry_after_default_seconds=3.0)
    response = answer(429)
    response.headers["Retry-After"] = "nan"
    with pytest.raises(RateLimited) as caught:
        client._check(PORTAL, "token", response)
    assert caught.value.retry_after == 3.0
    assert 2.5 < client._bucket.wait_time(PORTAL) <= 3.0


@pytest.mark.parametrize("status", [403, 405, 406, 415])
def test_answers_about_the_whole_request_are_refused_not_rejected(redis_conn, status):
    with pytest.raises(Refused) as caught:
        make_client(redis_conn)._check(PORTAL, "secret-token", answer(status))
    assert caught.value.status == status


@pytest.mark.parametrize("status", [400, 404, 409, 410, 422])
def test_answers_that_can_be_about_one_callback_are_rejected(redis_conn, status):
    with pytest.raises(Rejected) as caught:
        make_client(redis_conn)._check(PORTAL, "token", answer(status))
    assert not isinstance(caught.value, Refused)


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_server_errors_are_transient(redis_conn, status):
    with pytest.raises(Transient):
        make_client(redis_conn)._check(PORTAL, "token", answer(status))


def test_the_access_token_never_appears_in_a_refusal(redis_conn):
    body = {"message": "token secret-token-123 lacks scopes"}
    with pytest.raises(Refused) as caught:
        make_client(redis_conn)._check(PORTAL, "secret-token-123", answer(403, body))
    assert "secret-token-123" not in str(caught.value)


def test_a_refused_connection_is_not_sent(redis_conn):
    client = make_client(redis_conn, hubspot_api_base=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(NotSent):
        client.complete_callbacks(PORTAL, "token", PAIRS)


def test_a_read_timeout_may_have_reached_hubspot(redis_conn, fake):
    fake.set_faults(callback_latency=1.0)
    client = make_client(redis_conn, hubspot_api_base=fake.base_url, http_read_timeout_seconds=0.2)
    token = fake.issue_tokens(PORTAL)["access_token"]
    with pytest.raises(Transient) as caught:
        client.complete_callbacks(PORTAL, token, PAIRS)
    assert not isinstance(caught.value, NotSent)


def test_no_bucket_wait_past_the_deadline(redis_conn, fake):
    client = make_client(redis_conn, hubspot_api_base=fake.base_url, max_inline_wait_seconds=2.0)
    client._bucket.block(PORTAL, 1.0)  # the next token comes in a second
    deadline = time.monotonic() + sum((3.0, 10.0)) + 0.3  # room for 0.3 s of waiting only
    with pytest.raises(BucketWait):
        client.complete_callbacks(PORTAL, "token", PAIRS, deadline=deadline)
    assert fake.stats()["requests"] == 0


class SlowBucket(TokenBucket):
    """A real Redis bucket whose acquire returns late (a slow Redis, a long GC pause)."""

    def acquire(self, portal_id, max_wait, sleep=time.sleep) -> bool:
        taken = super().acquire(portal_id, max_wait, sleep)
        time.sleep(0.5)
        return taken


def test_a_send_is_not_made_when_the_bucket_returned_after_the_deadline(redis_conn, fake):
    client = make_client(
        redis_conn, bucket=SlowBucket(redis_conn, 10, 9.5), hubspot_api_base=fake.base_url
    )
    deadline = time.monotonic() + 13.0 + 0.3  # timeouts 3 + 10, and 0.3 s to spare
    with pytest.raises(TooLate):
        client.complete_callbacks(PORTAL, "token", PAIRS, deadline=deadline)
    assert fake.stats()["requests"] == 0


def test_hubspot_saying_no_calls_are_left_blocks_the_bucket_for_its_window(redis_conn, fake):
    """X-HubSpot-RateLimit-Remaining as a hint: our bucket (10 at once) would allow a fourth
    call, HubSpot's window (3 per 2 s) would answer it 429; the hint keeps it from being made."""
    fake.set_faults(rate_limit=3, rate_window=2.0)
    client = make_client(redis_conn, hubspot_api_base=fake.base_url, max_inline_wait_seconds=0.5)
    token = fake.issue_tokens(PORTAL)["access_token"]
    for _ in range(3):  # answered with Remaining 2, 1, 0
        client.complete_callbacks(PORTAL, token, PAIRS)
    assert 1.8 < client._bucket.wait_time(PORTAL) <= 2.0  # the window
    with pytest.raises(BucketWait):
        client.complete_callbacks(PORTAL, token, PAIRS)
    assert fake.stats()["rate_limited"] == 0
    assert fake.stats()["calls"]["complete_batch"] == {"204": 3}


def test_hubspot_saying_few_calls_are_left_caps_the_bucket(redis_conn, fake):
    fake.set_faults(rate_limit=5, rate_window=10.0)
    client = make_client(redis_conn, hubspot_api_base=fake.base_url)
    token = fake.issue_tokens(PORTAL)["access_token"]
    client.complete_callbacks(PORTAL, token, PAIRS)  # Remaining 4
    assert [client._bucket.take(PORTAL) for _ in range(4)] == [0.0] * 4
    assert client._bucket.take(PORTAL) > 0


@pytest.mark.parametrize(
    "headers",
    [
        {"X-HubSpot-RateLimit-Remaining": "109"},  # plenty left: our bucket decides
        {"X-HubSpot-RateLimit-Remaining": "nan"},
        {"X-HubSpot-RateLimit-Remaining": "-1"},
        {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"},
        {},
    ],
)
def test_rate_limit_headers_never_loosen_or_break_the_bucket(redis_conn, headers):
    client = make_client(redis_conn)
    client._bucket.block(PORTAL, 1.0)
    response = answer(204)
    response.headers.update(headers)
    client._check(PORTAL, "token", response)
    assert 0.9 < client._bucket.wait_time(PORTAL) <= 1.0
    client._bucket.block(PORTAL + 1, 0)  # one token available
    client._check(PORTAL + 1, "token", response)
    assert client._bucket.wait_time(PORTAL + 1) == 0.0


def test_a_429_follows_its_retry_after_not_the_window(redis_conn):
    client = make_client(redis_conn)
    response = answer(429)
    response.headers.update(
        {
            "Retry-After": "2",
            "X-HubSpot-RateLimit-Remaining": "0",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        }
    )
    with pytest.raises(RateLimited):
        client._check(PORTAL, "token", response)
    assert 1.9 < client._bucket.wait_time(PORTAL) <= 2.0


def test_the_send_start_is_taken_again_once_the_body_is_written(redis_conn):
    """The window anchor (`on_start`) is refreshed when the body has gone out in full: a send
    whose writing stalled (a slow reader here; a worker that lost the CPU in production) counts
    from when it really left, never from before."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class SlowReader(BaseHTTPRequestHandler):
        def do_POST(self):
            time.sleep(0.4)  # headers read; the body waits in the socket buffers
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowReader)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = make_client(redis_conn, hubspot_api_base=f"http://127.0.0.1:{server.server_port}")
        starts: list[float] = []
        big = {"inputs": [{"callbackId": "x" * 1000}] * 16_000}  # ~16 MB: more than the buffers
        began = time.monotonic()
        client.send(
            PORTAL, "POST", "/body", "token", big, on_start=lambda: starts.append(time.monotonic())
        )
        assert len(starts) == 2
        assert starts[0] - began < 0.3  # when the request was issued
        assert starts[-1] - began >= 0.35  # after the reader took the last byte
    finally:
        server.shutdown()
