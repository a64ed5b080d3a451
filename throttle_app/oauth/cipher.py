"""Encryption of OAuth tokens at rest (design invariant 7).

AES-256-GCM with a random 96-bit nonce per value. The associated data binds every ciphertext to
its portal and to its own header, so a value copied into another portal's row does not decrypt.

Keys rotate: a cipher holds an ordered sequence of 32-byte keys; the first encrypts, all decrypt.
Each stored value names its key by a key id derived from the key itself (first 8 hex characters of
SHA-256 over the key bytes), so operators configure keys only and decryption never guesses.

Stored format (ASCII, fits a TEXT column)::

    v1.<kid>.<base64url(nonce || ciphertext || tag), no padding>

Error messages never contain key material, plaintext or the stored value.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from throttle_app.encryption_keys import KEY_BYTES, InvalidKeyError, key_id

__all__ = ["DecryptionError", "InvalidKeyError", "TokenCipher", "stored_key_id", "stored_prefix"]

VERSION = "v1"
NONCE_BYTES = 12
TAG_BYTES = 16
_KID_RE = re.compile(r"^[0-9a-f]{8}$")
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class DecryptionError(ValueError):
    """A stored value cannot be decrypted (bad format, unknown key, tampered or wrong portal)."""


def _associated_data(kid: str, portal_id: int) -> bytes:
    return b"throttle:oauth:portal:%d|%s.%s" % (portal_id, VERSION.encode(), kid.encode())


def stored_key_id(stored: str) -> str | None:
    """The key id of a stored value (header only, no decryption); None when it is malformed."""
    try:
        kid, _ = TokenCipher._split(stored)
    except DecryptionError:
        return None
    return kid


def stored_prefix(kid: str) -> str:
    """How every value stored under key `kid` begins (for SQL LIKE)."""
    return f"{VERSION}.{kid}."


def _check_portal(portal_id: int) -> int:
    if isinstance(portal_id, bool) or not isinstance(portal_id, int):
        raise TypeError("portal_id must be an int")
    return portal_id


class TokenCipher:
    """AES-256-GCM cipher over an ordered key ring: the first key encrypts, every key decrypts."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if isinstance(keys, bytes | str) or not keys:
            raise InvalidKeyError("TokenCipher needs a non-empty sequence of 32-byte keys")
        ring: dict[str, AESGCM] = {}
        kids: list[str] = []
        for position, key in enumerate(keys, start=1):
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise InvalidKeyError(f"key {position} is not {KEY_BYTES} bytes")
            kid = key_id(key)
            if kid in ring:
                raise InvalidKeyError(f"key {position} duplicates an earlier key (id {kid})")
            ring[kid] = AESGCM(key)
            kids.append(kid)
        self._ring = ring
        self._kids = tuple(kids)

    def __repr__(self) -> str:
        return f"TokenCipher(key_ids={list(self._kids)!r})"

    @property
    def current_key_id(self) -> str:
        """Id of the key that encrypts new values."""
        return self._kids[0]

    def encrypt(self, plaintext: str, portal_id: int) -> str:
        """Encrypt ``plaintext`` for ``portal_id`` under the current key."""
        if not isinstance(plaintext, str):
            raise TypeError("plaintext must be a str")
        _check_portal(portal_id)
        kid = self.current_key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ring[kid].encrypt(
            nonce, plaintext.encode("utf-8"), _associated_data(kid, portal_id)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{VERSION}.{kid}.{body}"

    def decrypt(self, stored: str, portal_id: int) -> str:
        """Decrypt a value produced by :meth:`encrypt` for the same ``portal_id``.

        Raises DecryptionError for a malformed value, an unknown key id, tampering or a value
        that belongs to another portal.
        """
        _check_portal(portal_id)
        kid, blob = self._split(stored)
        aead = self._ring.get(kid)
        if aead is None:
            raise DecryptionError(f"encrypted value uses unknown key id {kid}")
        nonce, sealed = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
        try:
            plaintext = aead.decrypt(nonce, sealed, _associated_data(kid, portal_id))
        except InvalidTag:
            raise DecryptionError(
                "encrypted value failed authentication (tampered, or stored for another portal)"
            ) from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError("decrypted value is not valid UTF-8") from None

    def is_current(self, stored: str) -> bool:
        """True when ``stored`` is well formed and was encrypted under the current key.

        Only the header is checked (no decryption); use it to find values to re-encrypt.
        """
        return stored_key_id(stored) == self.current_key_id

    @staticmethod
    def _split(stored: str) -> tuple[str, bytes]:
        if not isinstance(stored, str):
            raise DecryptionError("encrypted value is not a string")
        parts = stored.split(".")
        if len(parts) != 3 or parts[0] != VERSION:
            raise DecryptionError(f"encrypted value is not in the {VERSION}.<kid>.<data> format")
        _, kid, body = parts
        if not _KID_RE.fullmatch(kid):
            raise DecryptionError("encrypted value has a malformed key id")
        if not _B64URL_RE.fullmatch(body):
            raise DecryptionError("encrypted value has a malformed body")
        try:
            blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise DecryptionError("encrypted value has a malformed body") from None
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionError("encrypted value is too short")
        return kid, blob
