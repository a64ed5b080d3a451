"""Token encryption at rest: AES-256-GCM, portal-bound, rotating keys."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from throttle_app.encryption_keys import InvalidKeyError, generate_key, parse_keys
from throttle_app.oauth.cipher import DecryptionError, TokenCipher

OLD = bytes(range(32))
NEW = bytes(range(100, 132))
TOKEN = "CJSP5qf1KhICAQEYs-gDIIGOBii1hQIyGQAf3xBKmlwHjX7OIpuIFEavB2-qYAGQsF4"


def _kid(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _flip(stored: str, index: int) -> str:
    version, kid, body = stored.split(".")
    blob = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    blob[index] ^= 0x01
    return ".".join([version, kid, base64.urlsafe_b64encode(bytes(blob)).rstrip(b"=").decode()])


def test_round_trip_and_format() -> None:
    cipher = TokenCipher([NEW])
    stored = cipher.encrypt(TOKEN, 12345)
    version, kid, body = stored.split(".")
    assert version == "v1"
    assert kid == _kid(NEW) == cipher.current_key_id
    assert stored.isascii() and "=" not in stored and TOKEN not in stored
    # nonce (12) + ciphertext (len) + tag (16)
    assert len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) == 12 + len(TOKEN) + 16
    assert cipher.decrypt(stored, 12345) == TOKEN


def test_round_trip_unicode_and_empty() -> None:
    cipher = TokenCipher([NEW])
    for text in ("", "é€😀", "x" * 5000):
        assert cipher.decrypt(cipher.encrypt(text, 1), 1) == text


def test_random_nonce_each_encryption() -> None:
    cipher = TokenCipher([NEW])
    a, b = cipher.encrypt(TOKEN, 7), cipher.encrypt(TOKEN, 7)
    assert a != b
    assert a.split(".")[2][:16] != b.split(".")[2][:16]
    assert cipher.decrypt(a, 7) == cipher.decrypt(b, 7) == TOKEN


def test_wrong_portal_fails() -> None:
    cipher = TokenCipher([NEW])
    stored = cipher.encrypt(TOKEN, 111)
    with pytest.raises(DecryptionError) as excinfo:
        cipher.decrypt(stored, 222)
    assert TOKEN not in str(excinfo.value)
    assert stored not in str(excinfo.value)


@pytest.mark.parametrize("index", [0, 11, 12, 20, -1])
def test_tamper_fails(index: int) -> None:
    cipher = TokenCipher([NEW])
    stored = cipher.encrypt(TOKEN, 5)
    with pytest.raises(DecryptionError):
        cipher.decrypt(_flip(stored, index), 5)


def test_kid_swap_fails() -> None:
    cipher = TokenCipher([NEW, OLD])
    stored = cipher.encrypt(TOKEN, 5)
    _, _, body = stored.split(".")
    with pytest.raises(DecryptionError):
        cipher.decrypt(f"v1.{_kid(OLD)}.{body}", 5)


def test_unknown_kid_fails() -> None:
    stored = TokenCipher([OLD]).encrypt(TOKEN, 5)
    with pytest.raises(DecryptionError, match="unknown key id"):
        TokenCipher([NEW]).decrypt(stored, 5)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "garbage",
        "v2.00000000.AAAA",
        "v1.zzzzzzzz.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.0000000.AAAA",
        "v1.00000000.AA==",
        "v1.00000000.AAAA",  # too short for nonce + tag
        "v1.00000000.AAAA.AAAA",
        "v1.00000000.!!!!",
    ],
)
def test_bad_format_fails(stored: str) -> None:
    with pytest.raises(DecryptionError):
        TokenCipher([NEW]).decrypt(stored, 5)
    assert TokenCipher([NEW]).is_current(stored) is False


def test_non_string_stored_fails() -> None:
    with pytest.raises(DecryptionError):
        TokenCipher([NEW]).decrypt(None, 5)  # type: ignore[arg-type]


def test_rotation() -> None:
    old_value = TokenCipher([OLD]).encrypt(TOKEN, 42)

    rotating = TokenCipher([NEW, OLD])
    assert rotating.current_key_id == _kid(NEW)
    assert rotating.decrypt(old_value, 42) == TOKEN
    assert rotating.is_current(old_value) is False

    re_encrypted = rotating.encrypt(rotating.decrypt(old_value, 42), 42)
    assert rotating.is_current(re_encrypted) is True
    assert re_encrypted.split(".")[1] == _kid(NEW)

    new_only = TokenCipher([NEW])
    assert new_only.decrypt(re_encrypted, 42) == TOKEN
    with pytest.raises(DecryptionError):
        new_only.decrypt(old_value, 42)


def test_cipher_rejects_bad_key_rings() -> None:
    with pytest.raises(InvalidKeyError):
        TokenCipher([])
    with pytest.raises(InvalidKeyError):
        TokenCipher([b"short"])
    with pytest.raises(InvalidKeyError):
        TokenCipher([NEW, NEW])
    with pytest.raises(InvalidKeyError):
        TokenCipher(NEW)  # a bare key, not a sequence of keys


def test_repr_hides_keys() -> None:
    text = repr(TokenCipher([NEW, OLD]))
    assert _kid(NEW) in text
    assert base64.b64encode(NEW).decode() not in text and NEW.hex() not in text


def test_portal_id_must_be_int() -> None:
    cipher = TokenCipher([NEW])
    with pytest.raises(TypeError):
        cipher.encrypt(TOKEN, "5")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cipher.encrypt(TOKEN, True)


def test_generate_key_and_parse_keys() -> None:
    k1, k2 = generate_key(), generate_key()
    assert k1 != k2
    assert len(base64.b64decode(k1, validate=True)) == 32
    keys = parse_keys(f"  {k1} ,\n{k2}\n")
    assert keys == (base64.b64decode(k1), base64.b64decode(k2))
    # URL-safe alphabet and missing padding are tolerated.
    url_safe = base64.urlsafe_b64encode(NEW).decode().rstrip("=")
    assert parse_keys(url_safe) == (NEW,)
    cipher = TokenCipher(parse_keys(f"{k1},{k2}"))
    assert cipher.decrypt(cipher.encrypt(TOKEN, 1), 1) == TOKEN


def _b64(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "TOKEN_ENCRYPTION_KEY is empty"),
        ("   ", "TOKEN_ENCRYPTION_KEY is empty"),
        ("Zm9v!!secret-material!!", "entry 1 is not base64 of 32 bytes"),
        ("@@@@" + _b64(32)[4:], "entry 1 is not base64 of 32 bytes"),
        (_b64(16), "entry 1 is not base64 of 32 bytes"),
        (_b64(31), "entry 1 is not base64 of 32 bytes"),
        (_b64(33), "entry 1 is not base64 of 32 bytes"),
        (f"{_b64(32)},{_b64(31)}", "entry 2 is not base64 of 32 bytes"),
        (f"{_b64(32)},,{_b64(32)}", "entry 2 is empty"),
    ],
)
def test_parse_keys_errors(value: str, message: str) -> None:
    with pytest.raises(InvalidKeyError) as excinfo:
        parse_keys(value)
    text = str(excinfo.value)
    assert message in text
    assert isinstance(excinfo.value, ValueError)
    assert excinfo.value.__cause__ is None
    for entry in value.split(","):
        entry = entry.strip()
        if entry:
            assert entry not in text and entry[:8] not in text and entry[-8:] not in text


def test_parse_keys_duplicate() -> None:
    key = _b64(32)
    with pytest.raises(InvalidKeyError) as excinfo:
        parse_keys(f"{key}, {_b64(32)}, {key}")
    text = str(excinfo.value)
    assert "entry 3 duplicates entry 1" in text
    assert key not in text and key[:8] not in text
