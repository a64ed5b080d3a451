"""The fake HubSpot behaves like HubSpot over real HTTP: OAuth, callbacks, rate limits, faults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from fake_hubspot import FakeHubSpot

CLIENT = {"client_id": "test-client-id", "client_secret": "test-client-secret"}
REDIRECT = "http://localhost:5000/api/oauth/callback"
BATCH = "/automation/v4/actions/callbacks/complete"
TOKEN = "/oauth/2026-03/token"
INTROSPECT = "/oauth/2026-03/token/introspect"
SUCCESS = {"hs_execution_state": "SUCCESS"}


def single(callback_id: str) -> str:
    return f"/automation/v4/actions/callbacks/{callback_id}/complete"


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def batch_body(*callback_ids: str, state: str = "SUCCESS") -> dict[str, Any]:
    return {
        "inputs": [
            {"callbackId": cid, "outputFields": {"hs_execution_state": state}}
            for cid in callback_ids
        ]
    }


def authorize(http: requests.Session, fake: FakeHubSpot, **extra: str) -> str:
    params = {
        "client_id": fake.client_id,
        "redirect_uri": REDIRECT,
        "scope": "automation oauth",
        "state": "s-123",
        **extra,
    }
    answer = http.get(f"{fake.base_url}/oauth/authorize", params=params, allow_redirects=False)
    assert answer.status_code == 302
    return answer.headers["Location"]


def code_from(location: str) -> str:
    return parse_qs(urlsplit(location).query)["code"][0]


def post_token(http: requests.Session, fake: FakeHubSpot, **form: str) -> requests.Response:
    return http.post(fake.base_url + TOKEN, data={**CLIENT, **form}, timeout=5)


# OAuth


def test_authorize_auto_approves_and_redirects_with_code_and_state(fake, http):
    location = authorize(http, fake)
    assert location.startswith(REDIRECT + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["s-123"] and query["code"][0]


def test_authorize_rejects_unknown_client_and_can_simulate_denial(fake, http):
    answer = http.get(
        f"{fake.base_url}/oauth/authorize",
        params={"client_id": "nope", "redirect_uri": REDIRECT, "scope": "automation"},
        allow_redirects=False,
    )
    assert answer.status_code == 400
    assert answer.headers["Content-Type"].startswith("text/html")
    denied = parse_qs(urlsplit(authorize(http, fake, deny="1")).query)
    assert denied["error"] == ["access_denied"] and "code" not in denied


def test_code_exchange_returns_tokens_for_the_chosen_portal(fake, http):
    code = code_from(authorize(http, fake, portal_id="777"))
    answer = post_token(
        http, fake, grant_type="authorization_code", code=code, redirect_uri=REDIRECT
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["hub_id"] == 777
    assert body["expires_in"] == 1800 and body["token_type"] == "bearer"
    assert body["scopes"] == ["automation", "oauth"]
    assert body["access_token"] and body["refresh_token"]


def test_code_defaults_to_the_default_portal_and_is_single_use(fake, http):
    code = code_from(authorize(http, fake))
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    first = post_token(http, fake, **form)
    assert first.json()["hub_id"] == 50467010
    again = post_token(http, fake, **form)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert again.json()["status"] == "BAD_AUTH_CODE"
    assert fake.stats()["token_calls"] == {"authorization_code": 2}


def test_code_exchange_checks_redirect_uri_and_client_credentials(fake, http):
    code = code_from(authorize(http, fake))
    wrong_uri = post_token(
        http, fake, grant_type="authorization_code", code=code, redirect_uri=REDIRECT + "x"
    )
    assert wrong_uri.status_code == 400 and wrong_uri.json()["error"] == "invalid_grant"
    wrong_secret = http.post(
        fake.base_url + TOKEN,
        data={
            **CLIENT,
            "client_secret": "wrong",
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
        },
    )
    assert wrong_secret.status_code in (400, 401)
    assert wrong_secret.json()["status"] == "BAD_CLIENT_SECRET"
    # Neither failure used the code up.
    ok = post_token(http, fake, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert ok.status_code == 200


def test_refresh_issues_a_new_access_token_and_is_counted(fake, http):
    tokens = fake.issue_tokens(123)
    answer = post_token(
        http, fake, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["hub_id"] == 123
    assert body["access_token"] != tokens["access_token"]
    assert body["refresh_token"] == tokens["refresh_token"]  # no rotation by default
    assert fake.stats()["token_calls"] == {"refresh_token": 1}


def test_rotating_refresh_tokens_kills_the_old_one(fake, http):
    fake.set_faults(rotate_refresh_tokens=True)
    old = fake.issue_tokens()["refresh_token"]
    new = post_token(http, fake, grant_type="refresh_token", refresh_token=old).json()
    assert new["refresh_token"] != old
    dead = post_token(http, fake, grant_type="refresh_token", refresh_token=old)
    assert dead.status_code == 400 and dead.json()["status"] == "BAD_REFRESH_TOKEN"


def test_revoked_refresh_token_answers_invalid_grant_and_its_access_token_dies(fake, http):
    tokens = fake.issue_tokens()
    revoked = http.post(
        fake.base_url + "/_fake/revoke", json={"refresh_token": tokens["refresh_token"]}
    )
    assert revoked.json() == {"revoked": True}
    answer = post_token(
        http, fake, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert answer.json()["status"] == "BAD_REFRESH_TOKEN"
    assert answer.json()["message"] == "missing or unknown refresh token"
    call = http.post(
        fake.base_url + single("cb-1"), json={"outputFields": SUCCESS}, headers=bearer(tokens)
    )
    assert call.status_code == 401


def test_introspect_reports_live_tokens_and_not_dead_ones(fake, http):
    tokens = fake.issue_tokens(4242)
    form = {**CLIENT, "token": tokens["access_token"], "token_type_hint": "access_token"}
    live = http.post(fake.base_url + INTROSPECT, data=form).json()
    assert live["active"] is True
    assert live["hub_id"] == 4242 and live["hub_domain"] == "portal-4242.example.com"
    assert live["client_id"] == CLIENT["client_id"] and live["token_type"] == "access_token"
    assert "automation" in live["scopes"] and 1790 <= live["expires_in"] <= 1800
    assert fake.expire_access_token(tokens["access_token"])
    assert http.post(fake.base_url + INTROSPECT, data=form).json() == {"active": False}
    unknown = {**form, "token": "nope"}
    assert http.post(fake.base_url + INTROSPECT, data=unknown).json() == {"active": False}


def test_access_tokens_expire_on_the_real_clock(http):
    with FakeHubSpot(expires_in=1) as fake:
        tokens = fake.issue_tokens()
        url = fake.base_url + single("cb-1")
        assert http.post(url, json={"outputFields": SUCCESS}, headers=bearer(tokens)).ok
        time.sleep(1.05)
        late = http.post(url, json={"outputFields": SUCCESS}, headers=bearer(tokens))
        assert late.status_code == 401
        assert late.json()["category"] == "EXPIRED_AUTHENTICATION"


def test_token_latency_slows_token_answers(fake, http):
    fake.set_faults(token_latency=0.3)
    form = {**CLIENT, "grant_type": "refresh_token", "refresh_token": "x"}
    with pytest.raises(requests.Timeout):
        http.post(fake.base_url + TOKEN, data=form, timeout=0.1)
    started = time.monotonic()
    assert http.post(fake.base_url + TOKEN, data=form, timeout=5).status_code == 400
    assert time.monotonic() - started >= 0.3


# Callbacks


def test_single_complete_answers_204_and_is_recorded(fake, http):
    tokens = fake.issue_tokens(99)
    answer = http.post(
        fake.base_url + single("ap-99-1-1-0"),
        json={"outputFields": {"hs_execution_state": "FAIL_CONTINUE"}},
        headers=bearer(tokens),
    )
    assert answer.status_code == 204 and answer.content == b""
    [record] = fake.completions()
    assert record["callback_id"] == "ap-99-1-1-0" and record["portal_id"] == 99
    assert record["state"] == "FAIL_CONTINUE" and record["batch_size"] == 1
    assert abs(record["time"] - time.time()) < 5


def test_batch_complete_answers_204_and_records_every_item(fake, http):
    tokens = fake.issue_tokens()
    ids = [f"cb-{i}" for i in range(100)]
    answer = http.post(fake.base_url + BATCH, json=batch_body(*ids), headers=bearer(tokens))
    assert answer.status_code == 204
    records = fake.completions()
    assert [r["callback_id"] for r in records] == ids
    assert {r["batch_size"] for r in records} == {100}
    assert len({r["batch_id"] for r in records}) == 1
    assert fake.stats()["batch_sizes"] == [100]


def test_completing_twice_is_recorded_twice(fake, http):
    tokens = fake.issue_tokens()
    for _ in range(2):
        http.post(fake.base_url + BATCH, json=batch_body("dup"), headers=bearer(tokens))
    assert len(fake.completions(callback_id="dup")) == 2


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}],
)
def test_callbacks_need_a_valid_bearer_token(fake, http, headers):
    answer = http.post(fake.base_url + BATCH, json=batch_body("cb"), headers=headers)
    assert answer.status_code == 401
    assert answer.json()["status"] == "error"
    assert answer.json()["category"] == "INVALID_AUTHENTICATION"
    assert fake.completions() == []


def test_batch_over_the_limit_answers_400_and_completes_nothing(fake, http):
    tokens = fake.issue_tokens()
    ids = [f"cb-{i}" for i in range(101)]
    answer = http.post(fake.base_url + BATCH, json=batch_body(*ids), headers=bearer(tokens))
    assert answer.status_code == 400
    assert answer.json()["category"] == "VALIDATION_ERROR"
    assert fake.completions() == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b"{}",
        b'{"inputs": []}',
        b'{"inputs": [{"outputFields": {"hs_execution_state": "SUCCESS"}}]}',
        b'{"inputs": [{"callbackId": "a"}]}',
        b'{"inputs": [{"callbackId": "a", "outputFields": {"hs_execution_state": "DONE"}}]}',
        b'{"inputs": [{"callbackId": 7, "outputFields": {"hs_execution_state": "SUCCESS"}}]}',
    ],
)
def test_malformed_batch_bodies_answer_400(fake, http, body):
    headers = {**bearer(fake.issue_tokens()), "Content-Type": "application/json"}
    answer = http.post(fake.base_url + BATCH, data=body, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["status"] == "error"
    assert fake.completions() == []


def test_callbacks_want_json(fake, http):
    answer = http.post(
        fake.base_url + BATCH,
        data="inputs=x",
        headers={**bearer(fake.issue_tokens()), "Content-Type": "text/plain"},
    )
    assert answer.status_code == 415


def test_malformed_single_body_answers_400(fake, http):
    answer = http.post(
        fake.base_url + single("cb"), json={"state": "SUCCESS"}, headers=bearer(fake.issue_tokens())
    )
    assert answer.status_code == 400


# Rate limits


def test_rate_limit_answers_429_like_hubspot_and_recovers(http):
    with FakeHubSpot(rate_limit=5, rate_window=1.0) as fake:
        tokens = fake.issue_tokens()
        url = fake.base_url + BATCH
        answers = [
            http.post(url, json=batch_body(f"cb-{i}"), headers=bearer(tokens)) for i in range(6)
        ]
        assert [a.status_code for a in answers] == [204] * 5 + [429]
        assert [a.headers["X-HubSpot-RateLimit-Remaining"] for a in answers[:5]] == [
            "4",
            "3",
            "2",
            "1",
            "0",
        ]
        limited = answers[5]
        assert limited.headers["X-HubSpot-RateLimit-Max"] == "5"
        assert limited.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "1000"
        assert limited.headers["Retry-After"] == "1"
        body = limited.json()
        assert body["status"] == "error" and body["errorType"] == "RATE_LIMIT"
        assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["correlationId"]
        assert body["message"] == "You have reached your ten_secondly_rolling limit."
        assert len(fake.completions()) == 5 and fake.completions(callback_id="cb-5") == []
        assert fake.stats()["rate_limited"] == 1
        time.sleep(1.05)
        assert http.post(url, json=batch_body("late"), headers=bearer(tokens)).status_code == 204


def test_default_limit_is_110_per_ten_seconds_even_under_concurrency(fake):
    headers = bearer(fake.issue_tokens())
    url = fake.base_url + BATCH

    def call(i: int) -> int:
        return requests.post(
            url, json=batch_body(f"cb-{i}"), headers=headers, timeout=5
        ).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(call, range(130)))
    assert codes.count(204) == 110 and codes.count(429) == 20
    assert len(fake.completions()) == 110


def test_rate_limit_is_per_portal_and_ignores_token_calls(http):
    with FakeHubSpot(rate_limit=2, rate_window=5.0) as fake:
        one, two = fake.issue_tokens(1), fake.issue_tokens(2)
        for _ in range(3):
            post_token(http, fake, grant_type="refresh_token", refresh_token=one["refresh_token"])
        url = fake.base_url + single("cb")
        codes = [
            http.post(url, json={"outputFields": SUCCESS}, headers=bearer(t)).status_code
            for t in (one, one, two, two, one)
        ]
        assert codes == [204, 204, 204, 204, 429]


def test_every_answered_call_counts_toward_the_limit(http):
    with FakeHubSpot(rate_limit=2, rate_window=5.0) as fake:
        headers = bearer(fake.issue_tokens())
        url = fake.base_url + BATCH
        assert http.post(url, json={}, headers=headers).status_code == 400
        assert http.post(url, json=batch_body("a"), headers=headers).status_code == 204
        assert http.post(url, json=batch_body("b"), headers=headers).status_code == 429


def test_retry_after_can_be_fixed_or_left_out(http):
    with FakeHubSpot(rate_limit=1, rate_window=5.0, retry_after=7) as fake:
        headers = bearer(fake.issue_tokens())
        url = fake.base_url + BATCH
        http.post(url, json=batch_body("a"), headers=headers)
        assert http.post(url, json=batch_body("b"), headers=headers).headers["Retry-After"] == "7"
        fake.set_faults(retry_after_header=False)
        answer = http.post(url, json=batch_body("c"), headers=headers)
        assert answer.status_code == 429 and "Retry-After" not in answer.headers


def test_forced_429_for_a_portal(fake, http):
    headers = bearer(fake.issue_tokens(5))
    fake.set_faults(force_429={5: 2})
    url = fake.base_url + BATCH
    codes = [http.post(url, json=batch_body("x"), headers=headers).status_code for _ in range(3)]
    assert codes == [429, 429, 204]
    assert len(fake.completions()) == 1


# Faults


def test_next_n_calls_fail_with_5xx_and_complete_nothing(fake, http):
    headers = bearer(fake.issue_tokens())
    fake.set_faults(fail_next=2, fail_next_status=502)
    url = fake.base_url + BATCH
    codes = [http.post(url, json=batch_body("x"), headers=headers).status_code for _ in range(3)]
    assert codes == [502, 502, 204]
    assert len(fake.completions()) == 1
    assert fake.stats()["calls"]["complete_batch"] == {"502": 2, "204": 1}


def test_every_nth_call_fails_and_still_carries_the_rate_limit_headers(fake, http):
    headers = bearer(fake.issue_tokens())
    fake.set_faults(fail_every=3, fail_every_status=502, rate_limit=100)
    url = fake.base_url + BATCH
    answers = [http.post(url, json=batch_body(f"x{n}"), headers=headers) for n in range(7)]
    assert [a.status_code for a in answers] == [204, 204, 502, 204, 204, 502, 204]
    assert {c["callback_id"] for c in fake.completions()} == {"x0", "x1", "x3", "x4", "x6"}
    assert answers[2].headers["X-HubSpot-RateLimit-Remaining"] == "97"
    assert answers[2].headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    fake.reset()  # the count starts again
    codes = [http.post(url, json=batch_body("y"), headers=headers).status_code for _ in range(3)]
    assert codes == [204, 204, 204]


def test_error_rate_answers_5xx(fake, http):
    headers = bearer(fake.issue_tokens())
    fake.set_faults(error_rate=1.0, error_statuses=[503])
    answer = http.post(fake.base_url + BATCH, json=batch_body("x"), headers=headers)
    assert answer.status_code == 503
    assert fake.completions() == []


def test_bad_callback_ids_fail_the_whole_batch(fake, http):
    headers = bearer(fake.issue_tokens())
    fake.set_faults(bad_callback_ids=["bad-1", "bad-2"])
    answer = http.post(
        fake.base_url + BATCH, json=batch_body("ok-1", "bad-2", "ok-2"), headers=headers
    )
    assert answer.status_code == 400
    assert "bad-2" in answer.json()["message"]
    assert answer.json()["context"] == {"callbackId": ["bad-2"]}
    assert fake.completions() == []
    alone = http.post(
        fake.base_url + single("bad-1"), json={"outputFields": SUCCESS}, headers=headers
    )
    assert alone.status_code == 400
    ok = http.post(fake.base_url + BATCH, json=batch_body("ok-1", "ok-2"), headers=headers)
    assert ok.status_code == 204


def test_callback_latency_provokes_client_timeouts_but_still_completes(fake, http):
    headers = bearer(fake.issue_tokens())
    fake.set_faults(callback_latency=0.5)
    with pytest.raises(requests.Timeout):
        http.post(fake.base_url + BATCH, json=batch_body("slow"), headers=headers, timeout=0.1)
    assert len(fake.completions(callback_id="slow")) == 1


# Control API


def test_control_api_over_http(fake, http):
    base = fake.base_url + "/_fake"
    seeded = http.post(base + "/portals", json={"portal_id": 31}).json()
    assert seeded["hub_id"] == 31 and seeded["expires_in"] == 1800
    faults = http.post(base + "/faults", json={"fail_next": 1}).json()
    assert faults["fail_next"] == 1
    assert http.post(base + "/faults", json={"nonsense": 1}).status_code == 400
    url = fake.base_url + BATCH
    assert http.post(url, json=batch_body("a"), headers=bearer(seeded)).status_code == 503
    assert http.post(url, json=batch_body("a", "b"), headers=bearer(seeded)).status_code == 204
    completions = http.get(base + "/completions", params={"portal_id": 31}).json()
    assert [c["callback_id"] for c in completions] == ["a", "b"]
    assert completions[0]["portal_id"] == 31 and completions[0]["state"] == "SUCCESS"
    stats = http.get(base + "/stats").json()
    assert stats["calls"]["complete_batch"] == {"503": 1, "204": 1}
    assert stats["batch_sizes"] == [2] and stats["completions"] == 2
    assert http.post(base + "/reset").json()["reset"] is True
    assert http.get(base + "/completions").json() == []
    assert http.get(base + "/faults").json()["fail_next"] == 0
    # Tokens survive a plain reset.
    assert http.post(url, json=batch_body("c"), headers=bearer(seeded)).status_code == 204
    expired = http.post(base + "/expire", json={"access_token": seeded["access_token"]})
    assert expired.json() == {"expired": True}
    assert http.post(url, json=batch_body("d"), headers=bearer(seeded)).status_code == 401


def test_set_faults_rejects_unknown_settings(fake):
    with pytest.raises(ValueError, match="unknown"):
        fake.set_faults(no_such_setting=1)
    with pytest.raises(ValueError):
        fake.set_faults(error_rate=2)


def test_runs_standalone_until_sigterm():
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fake_hubspot", "--port", "0", "--client-id", "cid"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert requests.get(base_url + "/_fake/stats", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
