"""Signature verification: HubSpot's published vectors, v3, and every way to fail."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import TEST_CLIENT_SECRET
from tests.support.hubspot_requests import execution_payload, post_execution, signed_headers
from throttle_app.hubspot.signatures import (
    SignatureError,
    v2_signature,
    v3_signature,
    verify_request,
)

VECTOR_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
VECTOR_URI = "https://www.example.com/webhook_uri"


def test_v2_matches_hubspot_vector_for_post():
    body = b'{"example_field":"example_value"}'
    assert (
        v2_signature(VECTOR_SECRET, "POST", VECTOR_URI, body)
        == "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"
    )


def test_v2_matches_hubspot_vector_for_get():
    assert (
        v2_signature(VECTOR_SECRET, "GET", VECTOR_URI, b"")
        == "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
    )


VECTOR_BODY = b'{"example_field":"example_value"}'
VECTOR_V2_HEADERS = {
    "X-HubSpot-Signature": "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900",
    "X-HubSpot-Signature-Version": "v2",
}


def test_v2_vector_verifies_through_verify_request():
    assert verify_request(VECTOR_SECRET, "POST", VECTOR_URI, VECTOR_BODY, VECTOR_V2_HEADERS) == "v2"


def test_v3_round_trip_and_timestamp_window():
    body = b"{}"
    stamp = str(int(time.time() * 1000))
    headers = {
        "X-HubSpot-Signature-v3": v3_signature(VECTOR_SECRET, "POST", VECTOR_URI, body, stamp),
        "X-HubSpot-Request-Timestamp": stamp,
    }
    assert verify_request(VECTOR_SECRET, "POST", VECTOR_URI, body, headers) == "v3"
    with pytest.raises(SignatureError, match="5 minutes"):
        verify_request(VECTOR_SECRET, "POST", VECTOR_URI, body, headers, now=time.time() + 301)


@pytest.mark.parametrize("signed_uri", ["raw", "decoded"])
def test_v3_accepts_the_uri_as_sent_or_with_hubspots_escapes_decoded(signed_uri):
    raw = "https://throttle.example.com/api/hubspot/action?from=hub%3Aspot%2Cv3&x=%2541"
    decoded = "https://throttle.example.com/api/hubspot/action?from=hub:spot,v3&x=%2541"
    now = time.time()
    stamp = str(int(now * 1000))
    uri = raw if signed_uri == "raw" else decoded
    headers = {
        "X-HubSpot-Signature-v3": v3_signature("s", "POST", uri, b"{}", stamp),
        "X-HubSpot-Request-Timestamp": stamp,
    }
    assert verify_request("s", "POST", raw, b"{}", headers, now=now) == "v3"
    # %25 (a literal "%") is not one of the decoded escapes: signing it decoded is a mismatch.
    headers["X-HubSpot-Signature-v3"] = v3_signature(
        "s", "POST", decoded.replace("%2541", "%41"), b"{}", stamp
    )
    with pytest.raises(SignatureError):
        verify_request("s", "POST", raw, b"{}", headers, now=now)


def test_v1_is_not_accepted():
    body = b"{}"
    import hashlib

    headers = {
        "X-HubSpot-Signature": hashlib.sha256(VECTOR_SECRET.encode() + body).hexdigest(),
        "X-HubSpot-Signature-Version": "v1",
    }
    with pytest.raises(SignatureError, match="v3 or v2"):
        verify_request(VECTOR_SECRET, "POST", VECTOR_URI, body, headers)


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_endpoint_accepts_each_signature_version(client, version):
    response = post_execution(client, execution_payload(), version=version)
    assert response.status_code == 200
    assert response.json["outputFields"]["hs_execution_state"] == "BLOCK"


def test_endpoint_refuses_wrong_signature(client):
    body = json.dumps(execution_payload()).encode()
    headers = signed_headers(body, secret="not-the-client-secret")
    response = client.post("/api/hubspot/action", data=body, headers=headers)
    assert response.status_code == 401
    assert "signature" in response.json["error"]


def test_endpoint_refuses_signature_over_another_body(client):
    body = json.dumps(execution_payload()).encode()
    headers = signed_headers(body)
    response = client.post("/api/hubspot/action", data=body + b" ", headers=headers)
    assert response.status_code == 401


def test_endpoint_refuses_missing_signature(client):
    response = client.post("/api/hubspot/action", json=execution_payload())
    assert response.status_code == 401


def test_endpoint_refuses_stale_v3_timestamp(client):
    stale = int((time.time() - 600) * 1000)
    response = post_execution(client, execution_payload(), version="v3", timestamp_ms=stale)
    assert response.status_code == 401
    assert "5 minutes" in response.json["error"]


@pytest.mark.parametrize("stamp", ["\u00b2", "9" * 5000, "-1", " 1"])
def test_malformed_v3_timestamp_is_a_401_not_a_500(client, stamp):
    body = json.dumps(execution_payload()).encode()
    headers = signed_headers(body, version="v3")
    headers["X-HubSpot-Request-Timestamp"] = stamp
    response = client.post("/api/hubspot/action", data=body, headers=headers)
    assert response.status_code == 401
    assert "X-HubSpot-Request-Timestamp" in response.json["error"]


def test_bad_v3_does_not_fall_back_to_a_valid_v2(client):
    body = json.dumps(execution_payload()).encode()
    headers = signed_headers(body, version="v2")
    headers["X-HubSpot-Signature-v3"] = "bm90LWEtc2lnbmF0dXJl"
    headers["X-HubSpot-Request-Timestamp"] = str(int(time.time() * 1000))
    response = client.post("/api/hubspot/action", data=body, headers=headers)
    assert response.status_code == 401
    assert "v3" in response.json["error"]


def test_public_base_url_is_the_signed_uri(make_app):
    app = make_app(public_base_url="https://throttle.example.com")
    client = app.test_client()
    body = json.dumps(execution_payload()).encode()
    proxied = signed_headers(body, url="https://throttle.example.com/api/hubspot/action")
    assert client.post("/api/hubspot/action", data=body, headers=proxied).status_code == 200
    direct = signed_headers(body, url="http://localhost/api/hubspot/action")
    assert client.post("/api/hubspot/action", data=body, headers=direct).status_code == 401


def test_secret_is_never_in_the_error(client):
    body = json.dumps(execution_payload()).encode()
    response = client.post(
        "/api/hubspot/action", data=body, headers=signed_headers(body, "v2", secret="x")
    )
    assert TEST_CLIENT_SECRET not in response.get_data(as_text=True)


# THROTTLE_REQUIRE_SIGNATURE_V3: once HubSpot signs with v3, v2 (no timestamp, replayable) is
# refused; off (the default), both are accepted.


def test_requiring_v3_refuses_a_valid_v2_signature():
    body, headers = VECTOR_BODY, VECTOR_V2_HEADERS  # verifies as v2 (test above)
    with pytest.raises(SignatureError, match="v3 signature is required"):
        verify_request(VECTOR_SECRET, "POST", VECTOR_URI, body, headers, require_v3=True)
    stamp = str(int(time.time() * 1000))
    v3 = {
        "X-HubSpot-Signature-v3": v3_signature(VECTOR_SECRET, "POST", VECTOR_URI, body, stamp),
        "X-HubSpot-Request-Timestamp": stamp,
    }
    assert verify_request(VECTOR_SECRET, "POST", VECTOR_URI, body, v3, require_v3=True) == "v3"


@pytest.mark.parametrize(("required", "v2_status"), [(False, 200), (True, 401)])
def test_endpoint_with_v3_required_or_not(make_app, required, v2_status):
    client = make_app(require_signature_v3=required).test_client()
    v2 = post_execution(client, execution_payload(callback_id="sig-v2"), version="v2")
    assert v2.status_code == v2_status
    if required:
        assert v2.json["error"] == (
            "invalid signature: a v3 signature is required (X-HubSpot-Signature-v3)"
        )
    v3 = post_execution(client, execution_payload(callback_id="sig-v3"), version="v3")
    assert v3.status_code == 200
    assert v3.json["outputFields"]["hs_execution_state"] == "BLOCK"


def test_requiring_v3_does_not_fall_back_to_v2_when_v3_is_bad(make_app):
    client = make_app(require_signature_v3=True).test_client()
    body = json.dumps(execution_payload()).encode()
    headers = signed_headers(body)  # a valid v2 signature
    headers["X-HubSpot-Signature-v3"] = "bm90LWEtc2lnbmF0dXJl"
    headers["X-HubSpot-Request-Timestamp"] = str(int(time.time() * 1000))
    response = client.post("/api/hubspot/action", data=body, headers=headers)
    assert response.status_code == 401
