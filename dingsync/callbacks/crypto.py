"""DingTalk's callback signatures and event encryption (reference/http-callbacks.md §1, §2).

Robot messages carry ``sign = base64(HMAC-SHA256(secret, timestamp + "\\n" + secret))`` in a
header. Event subscriptions are AES-256-CBC encrypted with the console's ``aes_key`` and signed
with SHA-1 over the sorted ``token``, ``timestamp``, ``nonce`` and ciphertext. AES comes from
the ``cryptography`` package (``pip install 'dingsync[callbacks]'``), imported on first use so
that robot-only apps never load it.

Every check raises :class:`CallbackRejected` with the HTTP status to answer and a one-line
reason that quotes nothing secret.

Example:
    >>> robot_sign("1577262236757", "this is a secret")
    'DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA='
    >>> crypto = EventCrypto("mryue", "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
    ...     "ding6ccabc44d2c8d38b")
    >>> crypto.decrypt(crypto.encrypt('{"EventType":"check_url"}'))
    '{"EventType":"check_url"}'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import string
from typing import Any, Callable, Dict, Optional

from ..errors import ConfigurationError, DingSyncError

__all__ = [
    "CallbackRejected",
    "EventCrypto",
    "robot_sign",
    "verify_robot_sign",
    "BLOCK",
]

#: DingTalk pads to 32-byte blocks (pad values 1..32), not AES's 16.
BLOCK = 32
_NONCE_ALPHABET = string.ascii_letters + string.digits


class CallbackRejected(DingSyncError):
    """An HTTP callback that must not reach a handler: the status to answer and why.

    Example:
        >>> err = CallbackRejected(401, "robot sign does not match")
        >>> err.status, str(err)
        (401, 'robot sign does not match')
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def robot_sign(timestamp: str, secret: str) -> str:
    """The ``sign`` header DingTalk sends with a robot message (base64, not URL-encoded).

    Example:
        >>> robot_sign("1577262236757", "this is a secret")
        'DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA='
    """
    key = secret.encode("utf-8")
    digest = hmac.new(key, f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_robot_sign(
    timestamp: Optional[str],
    sign: Optional[str],
    secret: str,
    *,
    now_ms: int,
    tolerance: float = 3600.0,
) -> None:
    """Accept a robot message's ``timestamp``/``sign`` headers or raise CallbackRejected (401).

    Example:
        >>> verify_robot_sign("1577262236757", "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA=",
        ...     "this is a secret", now_ms=1577262236757)
        >>> verify_robot_sign("1577262236757", "x", "this is a secret", now_ms=1577262236757)
        Traceback (most recent call last):
        ...
        dingsync.callbacks.crypto.CallbackRejected: robot sign does not match
    """
    if not timestamp or not sign:
        raise CallbackRejected(401, "robot message without timestamp and sign headers")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 16:
        raise CallbackRejected(401, "timestamp header is not epoch milliseconds")
    if abs(now_ms - int(timestamp)) > tolerance * 1000:
        raise CallbackRejected(401, f"timestamp is more than {tolerance:g} s away from now")
    expected = robot_sign(timestamp, secret)
    if not hmac.compare_digest(expected.encode("ascii"), sign.encode("utf-8", "replace")):
        raise CallbackRejected(401, "robot sign does not match")


def _cipher_factory() -> Callable[[bytes], Any]:
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:  # pragma: no cover - the extra is installed in every test run
        raise ConfigurationError(
            "event callbacks need the cryptography package: pip install 'dingsync[callbacks]'"
        ) from None

    def make(key: bytes) -> Any:
        return Cipher(algorithms.AES(key), modes.CBC(key[:16]))

    return make


class EventCrypto:
    """Encrypts, decrypts and signs event-subscription callbacks for one app.

    Args:
        token: the console's event ``Token``.
        aes_key: the console's 43-character ``aes_key`` (base64 of 32 bytes without the ``=``).
        owner_key: the app's key (client id) for an internal app's event subscription; the corp
            id for the legacy callback registration; the suite key for ISV apps.

    Raises:
        ConfigurationError: the token is empty or the aes_key is not 43 base64 characters.

    Example:
        >>> crypto = EventCrypto("mryue", "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
        ...     "ding6ccabc44d2c8d38b")
        >>> crypto.signature("1608001896814", "WL4PK6yA", "abc")
        '6d350cd9531ac41a4ee43c0d5a0a2180f8660663'
    """

    def __init__(self, token: str, aes_key: str, owner_key: str) -> None:
        if not token:
            raise ConfigurationError("the event token is empty; copy it from the developer console")
        if not owner_key:
            raise ConfigurationError("the event owner key (the app's client id) is empty")
        if not isinstance(aes_key, str) or len(aes_key) != 43:
            raise ConfigurationError(
                "the event aes_key must be the 43 characters the developer console shows"
            )
        try:
            key = base64.b64decode(aes_key + "=", validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError("the event aes_key is not base64; copy it again") from None
        self._token = token
        self._key = key
        self.owner_key = owner_key
        self._cipher = _cipher_factory()

    def __repr__(self) -> str:  # the token and the key are credentials
        return f"EventCrypto(owner_key={self.owner_key!r})"

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """``sha1("".join(sorted([token, timestamp, nonce, encrypt])))`` as lowercase hex."""
        joined = "".join(sorted((self._token, timestamp, nonce, encrypt)))
        return hashlib.sha1(joined.encode("utf-8")).hexdigest()

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        """Raise CallbackRejected (401) unless ``msg_signature`` signs the other three."""
        expected = self.signature(timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected.encode("ascii"), msg_signature.encode("utf-8")):
            raise CallbackRejected(401, "event msg_signature does not match")

    def encrypt(self, message: str, *, random_prefix: Optional[bytes] = None) -> str:
        """Encrypt ``message`` as DingTalk does: 16 random bytes, its UTF-8 length (4 bytes,
        big-endian), the message, the owner key, padded to 32-byte blocks; base64."""
        body = message.encode("utf-8")
        prefix = random_prefix if random_prefix is not None else os.urandom(16)
        if len(prefix) != 16:
            raise ConfigurationError("random_prefix must be 16 bytes")
        plain = prefix + len(body).to_bytes(4, "big") + body + self.owner_key.encode("utf-8")
        pad = BLOCK - len(plain) % BLOCK
        plain += bytes([pad]) * pad
        encryptor = self._cipher(self._key).encryptor()
        sealed: bytes = encryptor.update(plain) + encryptor.finalize()
        return base64.b64encode(sealed).decode("ascii")

    def decrypt(self, encrypt: str) -> str:
        """The message inside ``encrypt``; CallbackRejected (400, 403 for another owner) when
        it is not base64, not whole AES blocks, badly padded, not UTF-8 or not for this app."""
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError):
            raise CallbackRejected(400, "encrypt is not base64") from None
        if not raw or len(raw) % 16:
            raise CallbackRejected(400, "encrypt is not a whole number of AES blocks")
        decryptor = self._cipher(self._key).decryptor()
        plain: bytes = decryptor.update(raw) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or pad > len(plain) or plain[-pad:] != bytes([pad]) * pad:
            raise CallbackRejected(400, "encrypt does not decrypt (bad padding)")
        plain = plain[:-pad]
        if len(plain) < 20:
            raise CallbackRejected(400, "encrypt does not decrypt (too short)")
        length = int.from_bytes(plain[16:20], "big")
        if length > len(plain) - 20:
            raise CallbackRejected(400, "encrypt does not decrypt (bad length)")
        owner = plain[20 + length :]
        if not hmac.compare_digest(owner, self.owner_key.encode("utf-8")):
            raise CallbackRejected(403, "event is for another app (owner key differs)")
        try:
            return plain[20 : 20 + length].decode("utf-8")
        except UnicodeDecodeError:
            raise CallbackRejected(400, "event message is not UTF-8") from None

    def answer(
        self, message: str = "success", *, timestamp: str, nonce: Optional[str] = None
    ) -> Dict[str, str]:
        """The JSON answer DingTalk expects: ``message`` encrypted, signed, with its timestamp
        and nonce.

        Example:
            >>> sorted(crypto.answer(timestamp="1608001896814"))  # doctest: +SKIP
            ['encrypt', 'msg_signature', 'nonce', 'timeStamp']
        """
        nonce = nonce or "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(8))
        encrypt = self.encrypt(message)
        return {
            "msg_signature": self.signature(timestamp, nonce, encrypt),
            "timeStamp": timestamp,
            "nonce": nonce,
            "encrypt": encrypt,
        }
