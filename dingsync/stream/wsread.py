"""Fast websocket I/O for :class:`~dingsync.stream.connection.Connection`: frames read in
large chunks, text frames written without websocket-client's per-frame overhead.

websocket-client reads a frame in three unbuffered ``recv`` calls (header, length, payload),
each behind a ``poll`` when the socket has a timeout. :class:`FrameReader` reads up to 64 KiB
at once and parses every frame it can from that buffer, so a burst of pushes costs one system
call per many frames. It only ever consumes whole frames: a timeout leaves a partial frame in
the buffer for the next call, and :meth:`FrameReader.hand_back` returns the unread bytes to
websocket-client (for its closing handshake).

:class:`FrameWriter` frames and masks a text message itself (mask keys from one ``os.urandom``
call per 1,024 frames) and writes it under websocket-client's own send lock, so it never
interleaves with the pongs and pings websocket-client sends.
"""

from __future__ import annotations

import os
import socket
import ssl
from typing import Any, Callable, List, Optional, Tuple

import websocket

__all__ = ["FrameReader", "FrameWriter", "fast_reader_for", "fast_writer_for"]

_CHUNK = 65536
_MAX_READ = 1 << 20  # per recv() call, for the rare huge frame
_TEXT, _BINARY, _CONT, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
_DATA = frozenset({_TEXT, _BINARY})
_CONTROL = frozenset({_CLOSE, _PING, _PONG})


class FrameReader:
    """Parses server frames from ``sock`` into ``(opcode, payload)``; fragmented messages are
    joined; pings are answered through ``ws.pong``.

    Raises:
        socket.timeout: nothing complete arrived within the socket's timeout (nothing lost).
        websocket.WebSocketConnectionClosedException: the peer closed the TCP connection.
        websocket.WebSocketProtocolException: the peer broke the framing rules.
        OSError: the socket failed.
    """

    __slots__ = ("_ws", "_recv", "_buf", "_pos", "_parts", "_first", "before_fill")

    def __init__(self, ws: Any, sock: Any) -> None:
        # Called when every buffered frame has been read, before reading the socket again.
        self.before_fill: Optional[Callable[[], None]] = None
        self._ws = ws
        self._recv = sock.recv
        self._buf = b""
        self._pos = 0
        self._parts: Optional[List[bytes]] = None  # a fragmented message being joined
        self._first = _TEXT

    def read(self) -> Tuple[int, bytes]:
        """The next data message or control frame as ``(opcode, payload)``."""
        while True:
            frame = self._next_frame()
            if frame is None:
                if self.before_fill is not None:
                    self.before_fill()
                self._fill()
                continue
            fin, opcode, payload = frame
            if opcode in _DATA:
                if self._parts is not None:
                    raise _protocol_error("a new message started inside a fragmented one")
                if fin:
                    return opcode, payload
                self._parts, self._first = [payload], opcode
            elif opcode == _CONT:
                parts = self._parts
                if parts is None:
                    raise _protocol_error("a continuation frame without a message")
                parts.append(payload)
                if fin:
                    self._parts = None
                    return self._first, b"".join(parts)
            else:  # a control frame (validated by _next_frame)
                if opcode == _PING:
                    self._ws.pong(payload)
                return opcode, payload

    def _next_frame(self) -> Optional[Tuple[int, int, bytes]]:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 2:
            return None
        b1, b2 = buf[pos], buf[pos + 1]
        length = b2 & 0x7F
        head = pos + 2
        if length == 126:
            if avail < 4:
                return None
            length = int.from_bytes(buf[head : head + 2], "big")
            head += 2
        elif length == 127:
            if avail < 10:
                return None
            length = int.from_bytes(buf[head : head + 8], "big")
            head += 8
        masked = b2 & 0x80
        if masked:
            head += 4
        end = head + length
        if end > len(buf):
            return None
        opcode = b1 & 0x0F
        if b1 & 0x70 or (opcode not in _DATA and opcode != _CONT and opcode not in _CONTROL):
            raise _protocol_error(f"invalid frame header (byte 0x{b1:02x})")
        fin = b1 & 0x80
        if opcode in _CONTROL and (not fin or length > 125):
            raise _protocol_error("a control frame is fragmented or longer than 125 bytes")
        payload = buf[head:end]
        if masked:  # servers must not mask; tolerated as websocket-client does
            payload = websocket.ABNF.mask(buf[head - 4 : head], payload)
        self._pos = end
        return fin, opcode, payload

    def _fill(self) -> None:
        """Read at least what the frame at the head of the buffer still needs (a timeout or a
        failure keeps what was read)."""
        buf, pos = self._buf, self._pos
        missing = self._missing()
        chunks = [buf[pos:]] if pos < len(buf) else []
        recv = self._recv
        try:
            while missing > 0:
                try:
                    chunk = recv(min(max(_CHUNK, missing), _MAX_READ))
                except ssl.SSLWantReadError:  # no complete TLS record yet: as a timeout
                    raise socket.timeout("no complete TLS record") from None
                if not chunk:
                    raise websocket.WebSocketConnectionClosedException(
                        "Connection to remote host was lost."
                    )
                chunks.append(chunk)
                missing -= len(chunk)
        finally:
            self._buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._pos = 0

    def _missing(self) -> int:
        """How many more bytes the frame at the buffer's head needs (at least)."""
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 2:
            return 2 - avail
        length = buf[pos + 1] & 0x7F
        extra = 2 if length == 126 else 8 if length == 127 else 0
        if avail < 2 + extra:
            return 2 + extra - avail
        if extra:
            length = int.from_bytes(buf[pos + 2 : pos + 2 + extra], "big")
        mask = 4 if buf[pos + 1] & 0x80 else 0
        return max(0, 2 + extra + mask + length - avail)

    def hand_back(self) -> None:
        """Give the unread bytes back to websocket-client's own frame buffer (before
        ``ws.close()`` reads the peer's close frame through it)."""
        rest = self._buf[self._pos :]
        self._buf, self._pos = b"", 0
        if rest:
            try:
                buffer = self._ws.frame_buffer
                buffer.clear()
                buffer.recv_buffer = [rest, *buffer.recv_buffer]
            except AttributeError:  # pragma: no cover - a websocket-client without it
                pass


def _protocol_error(text: str) -> Exception:
    return websocket.WebSocketProtocolException(text)


def fast_reader_for(ws: Any) -> Optional[FrameReader]:
    """A FrameReader for a websocket-client ``WebSocket`` that has not read a frame yet, else
    None (tests' stand-ins, unknown versions: the caller keeps ``recv_data_frame``)."""
    try:
        if not isinstance(ws, websocket.WebSocket):
            return None
        sock = ws.sock
        buffer = ws.frame_buffer
        if sock is None or buffer.recv_buffer or buffer.header is not None:
            return None
        if ws.cont_frame.recving_frames is not None:
            return None
    except (ImportError, AttributeError):
        return None
    return FrameReader(ws, sock)


class FrameWriter:
    """Writes masked text frames to a websocket-client ``WebSocket``'s socket.

    Not thread-safe by itself: the caller serialises :meth:`send_text` (Connection holds its
    send lock); websocket-client's lock is taken too, for its own pongs and pings.
    """

    __slots__ = ("_sock", "_lock", "_keys", "_key_pos", "_plain")

    def __init__(self, ws: Any, sock: Any) -> None:
        self._sock = sock
        # A plain socket with a timeout polls before every send(); os.write() tries at once
        # (one system call; TLS sockets already write first and wait only when they must).
        self._plain = os.name == "posix" and type(sock) is socket.socket
        self._lock = ws.lock
        self._keys = b""
        self._key_pos = 0

    def send_text(self, payload: bytes) -> None:
        """Send ``payload`` (UTF-8) as one text frame; waits as long as the peer needs to
        take it, as websocket-client does.

        Raises:
            OSError: the socket failed (the frame may be partly written).
        """
        self._write(self._frame(payload))

    def send_texts(self, payloads: List[bytes]) -> None:
        """Send each of ``payloads`` as its own text frame, all in one write.

        Raises:
            OSError: the socket failed (some frames may be partly written).
        """
        frame = self._frame
        self._write(b"".join([frame(p) for p in payloads]))

    def _frame(self, payload: bytes) -> bytes:
        n = len(payload)
        if n < 126:
            header = bytes((0x81, 0x80 | n))
        elif n < 65536:
            header = bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
        else:
            header = bytes((0x81, 0xFF)) + n.to_bytes(8, "big")
        pos = self._key_pos
        if pos >= len(self._keys):
            self._keys, pos = os.urandom(4096), 0
        key = self._keys[pos : pos + 4]
        self._key_pos = pos + 4
        if n:
            stream = (key * (n // 4 + 1))[:n]
            masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
                n, "big"
            )
        else:
            masked = b""
        return header + key + masked

    def _write(self, frames: bytes) -> None:
        data = memoryview(frames)
        sock = self._sock
        send = sock.send
        with self._lock:
            if self._plain:
                fd = sock.fileno()
                if fd < 0:
                    raise OSError("the socket is closed")
                try:
                    data = data[os.write(fd, data) :]
                except BlockingIOError:
                    pass
            while data:
                try:
                    sent = send(data)
                except socket.timeout:  # the peer is slow to read: keep waiting
                    continue
                data = data[sent:]


def fast_writer_for(ws: Any) -> Optional[FrameWriter]:
    """A FrameWriter for a websocket-client ``WebSocket`` with a socket, else None."""
    try:
        if not isinstance(ws, websocket.WebSocket) or ws.sock is None:
            return None
        return FrameWriter(ws, ws.sock)
    except (ImportError, AttributeError):
        return None
