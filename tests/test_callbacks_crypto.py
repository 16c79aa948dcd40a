"""The callback crypto against the official vector and against an independent implementation
(callback_reference.py: written from reference/http-callbacks.md alone, on pycryptodome)."""

from __future__ import annotations

import base64
import struct

import pytest
from callback_reference import (
    reference_decrypt,
    reference_encrypt,
    reference_key,
    reference_robot_sign,
    reference_signature,
)
from Crypto.Cipher import AES
from cryptography.hazmat.primitives import padding
from hypothesis import given, settings
from hypothesis import strategies as st

from dingsync.callbacks import CallbackRejected, EventCrypto, robot_sign, verify_robot_sign
from dingsync.errors import ConfigurationError

# The official vector (open-dingtalk/DingTalk-Callback-Crypto, Python 3 sample).
TOKEN = "mryue"
AES_KEY = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7"
OWNER = "ding6ccabc44d2c8d38b"
TIMESTAMP = "1608001896814"
NONCE = "WL4PK6yA"
ENCRYPT = (
    "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK"
    "+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3"
)
SIGNATURE = "03044561471240d4a14bb09372dfcfd4fd0e40cb"
PLAINTEXT = '{"EventType":"check_url"}'
PREFIX = b"l7Y3EcX2CU5w8av3"


@pytest.fixture
def crypto() -> EventCrypto:
    return EventCrypto(TOKEN, AES_KEY, OWNER)


# -- the official vector ----------------------------------------------------------------
def test_official_vector_signature_and_plaintext(crypto: EventCrypto) -> None:
    assert crypto.signature(TIMESTAMP, NONCE, ENCRYPT) == SIGNATURE
    crypto.verify(SIGNATURE, TIMESTAMP, NONCE, ENCRYPT)
    assert crypto.decrypt(ENCRYPT) == PLAINTEXT


def test_official_vector_encrypts_back_byte_for_byte(crypto: EventCrypto) -> None:
    assert crypto.encrypt(PLAINTEXT, random_prefix=PREFIX) == ENCRYPT


def test_official_vector_reference_agrees() -> None:
    assert reference_signature(TOKEN, TIMESTAMP, NONCE, ENCRYPT) == SIGNATURE
    assert reference_decrypt(AES_KEY, ENCRYPT) == (PREFIX, PLAINTEXT, OWNER, 31)


def test_a_16_byte_pkcs7_unpadder_rejects_the_official_vector() -> None:
    """Pad 31 is valid in DingTalk's 32-byte scheme and invalid for AES's own 16-byte PKCS#7,
    which is why dingsync unpads by hand."""
    key = reference_key(AES_KEY)
    plain = AES.new(key, AES.MODE_CBC, key[:16]).decrypt(base64.b64decode(ENCRYPT))
    unpadder = padding.PKCS7(128).unpadder()
    with pytest.raises(ValueError):
        unpadder.update(plain) + unpadder.finalize()


def test_robot_vector() -> None:
    expected = "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA="
    assert robot_sign("1577262236757", "this is a secret") == expected
    assert reference_robot_sign("1577262236757", "this is a secret") == expected


# -- dingsync and the reference agree on any message --------------------------------------
@settings(max_examples=150, deadline=None)
@given(message=st.text(max_size=300), prefix=st.binary(min_size=16, max_size=16))
def test_dingsync_and_the_reference_agree_both_ways(message: str, prefix: bytes) -> None:
    crypto = EventCrypto(TOKEN, AES_KEY, OWNER)
    ours = crypto.encrypt(message, random_prefix=prefix)
    assert ours == reference_encrypt(AES_KEY, message, OWNER, prefix)
    assert reference_decrypt(AES_KEY, ours)[1] == message
    assert crypto.decrypt(reference_encrypt(AES_KEY, message, OWNER, prefix)) == message
    assert crypto.signature("1", "n", ours) == reference_signature(TOKEN, "1", "n", ours)


def test_length_is_counted_in_utf8_bytes_not_characters(crypto: EventCrypto) -> None:
    """The official Python sample counts characters and breaks on Chinese text; the length
    field must be the UTF-8 byte count."""
    message = '{"EventType":"chat_update_title","title":"项目周报"}'
    key = reference_key(AES_KEY)
    plain = AES.new(key, AES.MODE_CBC, key[:16]).decrypt(base64.b64decode(crypto.encrypt(message)))
    (length,) = struct.unpack(">I", plain[16:20])
    assert length == len(message.encode("utf-8")) != len(message)
    assert reference_decrypt(AES_KEY, crypto.encrypt(message))[1] == message


def test_answer_decrypts_to_success_and_is_signed(crypto: EventCrypto) -> None:
    answer = crypto.answer(timestamp="1700000000000", nonce="abcd1234")
    assert answer["timeStamp"] == "1700000000000" and answer["nonce"] == "abcd1234"
    assert answer["msg_signature"] == reference_signature(
        TOKEN, "1700000000000", "abcd1234", answer["encrypt"]
    )
    assert reference_decrypt(AES_KEY, answer["encrypt"])[1:3] == ("success", OWNER)


# -- rejections -------------------------------------------------------------------------
def test_wrong_owner_key_is_403() -> None:
    other = EventCrypto(TOKEN, AES_KEY, "dingsomeoneelse")
    with pytest.raises(CallbackRejected) as info:
        other.decrypt(ENCRYPT)
    assert info.value.status == 403


@pytest.mark.parametrize(
    "encrypt, reason",
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"short").decode(), "whole number of AES blocks"),
        ("", "whole number of AES blocks"),
    ],
)
def test_undecodable_ciphertext_is_400(crypto: EventCrypto, encrypt: str, reason: str) -> None:
    with pytest.raises(CallbackRejected) as info:
        crypto.decrypt(encrypt)
    assert info.value.status == 400 and reason in info.value.reason


def test_bad_padding_is_400(crypto: EventCrypto) -> None:
    key = reference_key(AES_KEY)
    plain = b"\x00" * 16 + struct.pack(">I", 2) + b"{}" + OWNER.encode() + b"\x00" * 22  # pad 0
    sealed = base64.b64encode(AES.new(key, AES.MODE_CBC, key[:16]).encrypt(plain)).decode()
    with pytest.raises(CallbackRejected, match="bad padding"):
        crypto.decrypt(sealed)


def test_tampered_ciphertext_fails_the_signature_then_the_decryption(crypto: EventCrypto) -> None:
    raw = bytearray(base64.b64decode(ENCRYPT))
    raw[-1] ^= 0x01
    tampered = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(CallbackRejected) as info:
        crypto.verify(SIGNATURE, TIMESTAMP, NONCE, tampered)
    assert info.value.status == 401
    with pytest.raises(CallbackRejected) as info:
        crypto.decrypt(tampered)
    assert info.value.status in (400, 403)


def test_bad_length_field_is_400(crypto: EventCrypto) -> None:
    key = reference_key(AES_KEY)
    plain = b"\x00" * 16 + struct.pack(">I", 10_000) + b"{}" + OWNER.encode()
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    sealed = base64.b64encode(AES.new(key, AES.MODE_CBC, key[:16]).encrypt(plain)).decode()
    with pytest.raises(CallbackRejected, match="bad length"):
        crypto.decrypt(sealed)


@pytest.mark.parametrize(
    "token, aes_key, owner",
    [
        ("", AES_KEY, OWNER),
        (TOKEN, AES_KEY[:-1], OWNER),
        (TOKEN, "!" * 43, OWNER),
        (TOKEN, AES_KEY, ""),
    ],
)
def test_bad_configuration_is_a_configuration_error(token: str, aes_key: str, owner: str) -> None:
    with pytest.raises(ConfigurationError):
        EventCrypto(token, aes_key, owner)


def test_repr_hides_token_and_key(crypto: EventCrypto) -> None:
    assert TOKEN not in repr(crypto) and AES_KEY not in repr(crypto)


@pytest.mark.parametrize(
    "timestamp, sign, reason",
    [
        (None, "x", "without timestamp and sign"),
        ("1577262236757", None, "without timestamp and sign"),
        ("15772622367a7", "x", "not epoch milliseconds"),
        ("١٥٧٧٢٦٢٢٣٦٧٥٧", "x", "not epoch milliseconds"),  # Arabic-Indic digits
        ("1577262236757", "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA", "does not match"),
        ("1577262236757", "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA%3D", "does not match"),
    ],
)
def test_robot_sign_rejections(timestamp: str, sign: str, reason: str) -> None:
    with pytest.raises(CallbackRejected) as info:
        verify_robot_sign(timestamp, sign, "this is a secret", now_ms=1577262236757)
    assert info.value.status == 401 and reason in info.value.reason


def test_robot_timestamp_window_is_one_hour_by_default_and_configurable() -> None:
    ts, secret = "1577262236757", "this is a secret"
    sign = robot_sign(ts, secret)
    hour = 3600 * 1000
    verify_robot_sign(ts, sign, secret, now_ms=int(ts) + hour)
    verify_robot_sign(ts, sign, secret, now_ms=int(ts) - hour)
    for now in (int(ts) + hour + 1, int(ts) - hour - 1):
        with pytest.raises(CallbackRejected, match="away from now"):
            verify_robot_sign(ts, sign, secret, now_ms=now)
    with pytest.raises(CallbackRejected, match="away from now"):
        verify_robot_sign(ts, sign, secret, now_ms=int(ts) + 61_000, tolerance=60)
