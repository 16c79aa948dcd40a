"""An independent implementation of DingTalk's callback crypto, for conformance tests.

Written from reference/http-callbacks.md alone, not from dingsync's code, and on pycryptodome's
AES (a different library from the ``cryptography`` package dingsync uses), so that a mistake
shared by dingsync and its emulator cannot hide: both must agree with this byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from typing import Tuple

from Crypto.Cipher import AES


def reference_key(aes_key: str) -> bytes:
    return base64.b64decode(aes_key + "=")


def reference_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode()).hexdigest()


def reference_encrypt(aes_key: str, message: str, owner: str, prefix: bytes) -> str:
    key = reference_key(aes_key)
    body = message.encode("utf-8")
    plain = prefix + struct.pack(">I", len(body)) + body + owner.encode("utf-8")
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    return base64.b64encode(AES.new(key, AES.MODE_CBC, key[:16]).encrypt(plain)).decode()


def reference_decrypt(aes_key: str, encrypt: str) -> Tuple[bytes, str, str, int]:
    """(random prefix, message, owner key, pad) of ``encrypt``."""
    key = reference_key(aes_key)
    plain = AES.new(key, AES.MODE_CBC, key[:16]).decrypt(base64.b64decode(encrypt))
    pad = plain[-1]
    assert 1 <= pad <= 32 and plain[-pad:] == bytes([pad]) * pad
    plain = plain[:-pad]
    (length,) = struct.unpack(">I", plain[16:20])
    return plain[:16], plain[20 : 20 + length].decode("utf-8"), plain[20 + length :].decode(), pad


def reference_robot_sign(timestamp: str, secret: str) -> str:
    mac = hmac.new(secret.encode(), (timestamp + "\n" + secret).encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()
