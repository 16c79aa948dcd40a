"""Websocket frames over the socket that websocket-client opened (it does the handshake,
proxy and TLS). Every frame of a gateway connection is read and written here, over
``WebSocket.sock``: one read path and one write path whatever the websocket-client version, 64
KiB per read where websocket-client makes three calls per frame, and a batch of acks per write.
"""

from __future__ import annotations

import os
import socket
import ssl
from typing import Any, List, Optional, Tuple

__all__ = ["FrameReader", "Masker", "TEXT", "BINARY", "CLOSE", "PING", "PONG"]

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
_CONT = 0x0
_DATA = frozenset({TEXT, BINARY})
_CONTROL = frozenset({CLOSE, PING, PONG})
_CHUNK = 65536


class FrameReader:
    """Parses server frames from ``sock`` into ``(opcode, payload)``; fragments are joined.

    Raises:
        socket.timeout: nothing complete arrived within the socket's timeout (nothing lost:
            a partial frame stays buffered for the next call).
        ConnectionResetError: the peer closed the TCP connection.
        ValueError: the peer broke the framing rules.
        OSError: the socket failed.

    Example:
        >>> a, b = socket.socketpair()
        >>> _ = b.send(bytes((0x81, 2)) + b"hi")
        >>> FrameReader(a).read()
        (1, b'hi')
    """

    __slots__ = ("_recv", "_buf", "_pos", "_parts", "_first")

    def __init__(self, sock: Any) -> None:
        self._recv = sock.recv
        self._buf = b""
        self._pos = 0
        self._parts: Optional[List[bytes]] = None  # a fragmented message being joined
        self._first = TEXT

    def read(self) -> Tuple[int, bytes]:
        """The next data message or control frame."""
        while True:
            frame = self._next_frame()
            if frame is None:
                self._fill()
                continue
            fin, opcode, payload = frame
            if opcode in _CONTROL:
                return opcode, payload
            if opcode != _CONT:
                if self._parts is not None:
                    raise ValueError("a new message started inside a fragmented one")
                if fin:
                    return opcode, payload
                self._parts, self._first = [payload], opcode
                continue
            if self._parts is None:
                raise ValueError("a continuation frame without a message")
            self._parts.append(payload)
            if fin:
                parts, self._parts = self._parts, None
                return self._first, b"".join(parts)

    def _next_frame(self) -> Optional[Tuple[int, int, bytes]]:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 2:
            return None
        b1, b2 = buf[pos], buf[pos + 1]
        length = b2 & 0x7F
        head = pos + 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if avail < 2 + size:
                return None
            length = int.from_bytes(buf[head : head + size], "big")
            head += size
        masked = b2 & 0x80
        head += 4 if masked else 0
        end = head + length
        if end > len(buf):
            return None
        opcode = b1 & 0x0F
        if b1 & 0x70 or (opcode not in _DATA and opcode != _CONT and opcode not in _CONTROL):
            raise ValueError(f"invalid frame header (byte 0x{b1:02x})")
        if opcode in _CONTROL and (not b1 & 0x80 or length > 125):
            raise ValueError("a control frame is fragmented or longer than 125 bytes")
        payload = buf[head:end]
        if masked:  # servers must not mask; tolerated, as websocket-client does
            payload = _xor(payload, buf[head - 4 : head])
        self._pos = end
        return b1 & 0x80, opcode, payload

    def _fill(self) -> None:
        """Read what the socket has (up to 64 KiB): a timeout or a failure loses nothing."""
        try:
            chunk = self._recv(_CHUNK)
        except ssl.SSLWantReadError:  # no complete TLS record yet: as a timeout
            raise socket.timeout("no complete TLS record") from None
        if not chunk:
            raise ConnectionResetError("the peer closed the connection")
        self._buf = self._buf[self._pos :] + chunk if self._pos < len(self._buf) else chunk
        self._pos = 0


class Masker:
    """Encodes client frames, which RFC 6455 requires to be masked; mask keys come from one
    ``os.urandom`` call per 1,024 frames. One instance per writing thread.

    Example:
        >>> frame = Masker().encode(TEXT, b"hi")
        >>> frame[0], frame[1], len(frame)
        (129, 130, 8)
    """

    __slots__ = ("_keys", "_pos")

    def __init__(self) -> None:
        self._keys = b""
        self._pos = 0

    def encode(self, opcode: int, payload: bytes) -> bytes:
        """One final frame of ``opcode`` carrying ``payload``."""
        n = len(payload)
        first = 0x80 | opcode
        if n < 126:
            header = bytes((first, 0x80 | n))
        elif n < 65536:
            header = bytes((first, 0xFE)) + n.to_bytes(2, "big")
        else:
            header = bytes((first, 0xFF)) + n.to_bytes(8, "big")
        pos = self._pos
        if pos >= len(self._keys):
            self._keys, pos = os.urandom(4096), 0
        key = self._keys[pos : pos + 4]
        self._pos = pos + 4
        return header + key + _xor(payload, key)


def _xor(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    # One big-integer XOR is ~50x faster than a Python loop over the bytes.
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
