"""Key material for TOKEN_ENCRYPTION_KEY: what a key is, how the setting is parsed, key ids.

Apart from the cipher (oauth/cipher.py) so that config.py can check the setting at start-up
without importing a feature package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re

KEY_BYTES = 32
_B64_RE = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")


class InvalidKeyError(ValueError):
    """A configured encryption key is unusable. The message never contains key material."""


def key_id(key: bytes) -> str:
    """The key id stored with each value: first 8 hex chars of SHA-256 over the key bytes."""
    return hashlib.sha256(key).hexdigest()[:8]


def generate_key() -> str:
    """A new key for TOKEN_ENCRYPTION_KEY: standard base64 of 32 random bytes."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def parse_keys(value: str, name: str = "TOKEN_ENCRYPTION_KEY") -> tuple[bytes, ...]:
    """Parse ``"base64key1,base64key2"`` (newest first) into raw 32-byte keys.

    Whitespace around entries is ignored; standard and URL-safe base64 are accepted, with or
    without padding. Errors name the setting and the 1-based entry position, never the key.
    """
    if value is None or not value.strip():
        raise InvalidKeyError(f"{name} is empty: set it to one or more base64-encoded 32-byte keys")
    keys: list[bytes] = []
    for position, raw in enumerate(value.split(","), start=1):
        entry = raw.strip()
        if not entry:
            raise InvalidKeyError(f"{name} entry {position} is empty")
        key = _decode_key(entry)
        if key is None:
            raise InvalidKeyError(f"{name} entry {position} is not base64 of {KEY_BYTES} bytes")
        if key in keys:
            first = keys.index(key) + 1
            raise InvalidKeyError(f"{name} entry {position} duplicates entry {first}")
        keys.append(key)
    return tuple(keys)


def _decode_key(entry: str) -> bytes | None:
    if not _B64_RE.fullmatch(entry):
        return None
    unpadded = entry.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None
