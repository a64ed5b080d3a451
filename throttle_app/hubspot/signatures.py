"""HubSpot request signatures, verified on the raw body bytes in constant time.

v3 when its headers are present (HMAC-SHA256 keyed by the client secret over METHOD + URI + body +
timestamp, base64; timestamps more than 5 minutes off are refused), otherwise v2 (SHA-256 hex of
secret + METHOD + URI + body), unless v3 is required. v1 (secret + body, no URI) is not accepted.

Replays: v2 carries no timestamp, so a captured v2 request verifies forever. While its execution
row is kept (THROTTLE_RETENTION_DAYS), a replay is answered from the stored row and changes
nothing (callbackId idempotency); once the row is purged, a replay would be admitted as a new
execution. Requiring v3 (THROTTLE_REQUIRE_SIGNATURE_V3, once HubSpot signs the app's requests
with v3) closes that: a v3 request is refused 5 minutes after HubSpot signed it, and within those
5 minutes its row exists.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping

MAX_TIMESTAMP_SKEW_SECONDS = 300
# Milliseconds since the epoch in ASCII digits. (str.isdigit() also accepts "²", which int() then
# refuses, and int() refuses over 4300 digits: both were 500s before any signature check.)
_MILLISECONDS = re.compile(r"[0-9]{1,16}")


# HubSpot's v3 instructions decode these escapes in the URI before signing (v2 signs it as sent).
_V3_DECODED = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip
_V3_ESCAPE = re.compile("|".join(_V3_DECODED), re.IGNORECASE)


class SignatureError(Exception):
    """The request is not provably from HubSpot; the message says why (never the secret)."""


def v2_signature(secret: str, method: str, uri: str, body: bytes) -> str:
    source = secret.encode() + method.upper().encode() + uri.encode() + body
    return hashlib.sha256(source).hexdigest()


def v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    source = method.upper().encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_request(
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    now: float | None = None,
    require_v3: bool = False,
) -> str:
    """Return the version that verified ("v3" or "v2"); raise SignatureError otherwise.
    With `require_v3`, a request without v3 headers is refused whatever its v2 signature."""
    v3 = headers.get("X-HubSpot-Signature-v3")
    if v3 is not None:
        timestamp = headers.get("X-HubSpot-Request-Timestamp", "")
        if not _MILLISECONDS.fullmatch(timestamp):
            raise SignatureError("X-HubSpot-Request-Timestamp is missing or not milliseconds")
        current = time.time() if now is None else now
        if abs(current * 1000 - int(timestamp)) > MAX_TIMESTAMP_SKEW_SECONDS * 1000:
            raise SignatureError("X-HubSpot-Request-Timestamp is more than 5 minutes off")
        given = v3.strip().encode()
        # The URI as sent, and as HubSpot's v3 instructions have it (a few escapes decoded).
        decoded = _V3_ESCAPE.sub(lambda m: _V3_DECODED[m.group().upper()], uri)
        if not any(
            hmac.compare_digest(v3_signature(secret, method, u, body, timestamp).encode(), given)
            for u in dict.fromkeys((uri, decoded))
        ):
            raise SignatureError("X-HubSpot-Signature-v3 does not match")
        return "v3"
    if require_v3:
        raise SignatureError("a v3 signature is required (X-HubSpot-Signature-v3)")
    signature = headers.get("X-HubSpot-Signature")
    if signature is None:
        raise SignatureError("no HubSpot signature headers")
    version = headers.get("X-HubSpot-Signature-Version", "").strip().lower()
    if version != "v2":
        raise SignatureError("signature version must be v3 or v2")
    expected = v2_signature(secret, method, uri, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise SignatureError("X-HubSpot-Signature does not match")
    return "v2"
