"""Properties of HubSpot request signatures, for generated secrets, methods, URIs, bodies and
timestamps: a valid v2 or v3 signature always verifies, and a change of any single byte of the
body, the URI or the timestamp never does.

One allowance, stated where it applies: v3 signatures are also accepted over the URI with a few
percent-escapes decoded (HubSpot's v3 instructions), and percent-escapes are case-insensitive
(RFC 3986 section 2.1), so for a signature made over the decoded URI, changing the case of an
escape's hex digit names the same URI and still verifies.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from throttle_app.hubspot.signatures import (
    MAX_TIMESTAMP_SKEW_SECONDS,
    SignatureError,
    v2_signature,
    v3_signature,
    verify_request,
)

NOW = 1_780_000_000.0  # a fixed clock: timestamps are generated around it
PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

_ESCAPES = ["%3A", "%2F", "%3F", "%40", "%21", "%24", "%27", "%28", "%29", "%2A", "%2C", "%3B"]
_ESCAPE = re.compile("|".join(_ESCAPES), re.IGNORECASE)
_DECODED = {escape: bytes.fromhex(escape[1:]).decode() for escape in _ESCAPES}

secrets = st.text(min_size=1, max_size=64).filter(lambda s: s.strip() == s and s)
methods = st.sampled_from(["POST", "GET", "PUT", "post"])
path_pieces = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~/?=&:@!$'()*+,;", max_size=12),
    st.sampled_from(_ESCAPES + [e.lower() for e in _ESCAPES] + ["%20", "%7E", "%25"]),
)
uris = st.builds(
    lambda host, pieces: f"https://{host}/api/hubspot/action" + "".join(pieces),
    st.sampled_from(["throttle.example.com", "localhost:8000", "127.0.0.1"]),
    st.lists(path_pieces, max_size=6),
)
bodies = st.binary(max_size=2048)
timestamps = st.integers(
    int(NOW * 1000) - MAX_TIMESTAMP_SKEW_SECONDS * 1000 + 1,
    int(NOW * 1000) + MAX_TIMESTAMP_SKEW_SECONDS * 1000 - 1,
).map(str)


def decoded(uri: str) -> str:
    """The URI as HubSpot's v3 instructions sign it: a few escapes decoded."""
    return _ESCAPE.sub(lambda m: _DECODED[m.group().upper()], uri)


def v3_headers(signature: str, timestamp: str) -> dict[str, str]:
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp}


def v2_headers(signature: str) -> dict[str, str]:
    return {"X-HubSpot-Signature": signature, "X-HubSpot-Signature-Version": "v2"}


def verifies(*args, **kwargs) -> bool:
    try:
        verify_request(*args, now=NOW, **kwargs)
    except SignatureError:
        return False
    return True


def one_byte_changed(data: bytes, index: int, replacement: int) -> bytes | None:
    """`data` with the byte at `index` (mod its length) replaced; None when nothing changes."""
    if not data:
        return None
    index %= len(data)
    if data[index] == replacement:
        return None
    return data[:index] + bytes([replacement]) + data[index + 1 :]


ascii_bytes = st.integers(0x21, 0x7E)  # a URI or a header stays printable ASCII on the wire


@PROPERTY_SETTINGS
@given(secrets, methods, uris, bodies, timestamps, st.booleans())
def test_a_valid_v3_signature_always_verifies(secret, method, uri, body, stamp, over_decoded):
    signed_uri = decoded(uri) if over_decoded else uri
    signature = v3_signature(secret, method, signed_uri, body, stamp)
    assert verify_request(secret, method, uri, body, v3_headers(signature, stamp), now=NOW) == "v3"


@PROPERTY_SETTINGS
@given(secrets, methods, uris, bodies)
def test_a_valid_v2_signature_always_verifies(secret, method, uri, body):
    signature = v2_signature(secret, method, uri, body)
    assert verify_request(secret, method, uri, body, v2_headers(signature), now=NOW) == "v2"


@PROPERTY_SETTINGS
@given(secrets, methods, uris, bodies, timestamps, st.integers(0), st.integers(0, 255))
def test_no_single_byte_change_of_the_body_verifies(
    secret, method, uri, body, stamp, index, replacement
):
    changed = one_byte_changed(body, index, replacement)
    if changed is None:
        changed = body + bytes([replacement])  # an empty body: one byte more is a change too
    v3 = v3_signature(secret, method, uri, body, stamp)
    v2 = v2_signature(secret, method, uri, body)
    assert not verifies(secret, method, uri, changed, v3_headers(v3, stamp))
    assert not verifies(secret, method, uri, changed, v2_headers(v2))


@PROPERTY_SETTINGS
@given(secrets, methods, uris, bodies, timestamps, st.integers(0), ascii_bytes, st.booleans())
def test_no_single_byte_change_of_the_uri_verifies(
    secret, method, uri, body, stamp, index, replacement, over_decoded
):
    changed_bytes = one_byte_changed(uri.encode(), index, replacement)
    if changed_bytes is None:
        return
    changed = changed_bytes.decode()
    signed_uri = decoded(uri) if over_decoded else uri
    v3 = v3_signature(secret, method, signed_uri, body, stamp)
    if not (over_decoded and decoded(changed) == signed_uri):  # the same URI (module docstring)
        assert not verifies(secret, method, changed, body, v3_headers(v3, stamp))
    v2 = v2_signature(secret, method, uri, body)
    assert not verifies(secret, method, changed, body, v2_headers(v2))


@PROPERTY_SETTINGS
@given(secrets, methods, uris, bodies, timestamps, st.integers(0), st.integers(0, 255))
def test_no_single_byte_change_of_the_timestamp_verifies(
    secret, method, uri, body, stamp, index, replacement
):
    changed = one_byte_changed(stamp.encode(), index, replacement)
    if changed is None:
        return
    v3 = v3_signature(secret, method, uri, body, stamp)
    headers = v3_headers(v3, changed.decode("latin-1"))
    assert not verifies(secret, method, uri, body, headers)
