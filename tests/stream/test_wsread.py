"""The buffered frame reader and the frame writer behind Connection (dingsync.stream.wsread)."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any, Iterator, List, Tuple

import pytest
import websocket

from dingsync.stream.wsread import FrameReader, FrameWriter

SIZES = [0, 1, 5, 125, 126, 200, 65535, 65536, 300_000, 2_000_000]


def _frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = False) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes((first, n | bit))
    elif n < 65536:
        head = bytes((first, 126 | bit)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 127 | bit)) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + websocket.ABNF.mask(key, payload)


class _Ws:
    def __init__(self) -> None:
        self.pongs: List[bytes] = []
        self.lock = threading.Lock()

    def pong(self, payload: bytes) -> None:
        self.pongs.append(payload)


@pytest.fixture
def pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.settimeout(0.5)
    yield a, b
    a.close()
    b.close()


def _write_slowly(sock: socket.socket, data: bytes) -> threading.Thread:
    def write() -> None:
        for i in range(0, len(data), 7919):  # frames split at odd places
            sock.sendall(data[i : i + 7919])

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_reader_parses_frames_of_every_size_split_anywhere(pair: Any) -> None:
    a, b = pair
    ws = _Ws()
    reader = FrameReader(ws, a)
    payloads = [os.urandom(n) for n in SIZES]
    data = b"".join(_frame(2, p, mask=i % 3 == 0) for i, p in enumerate(payloads))
    data += _frame(1, b"ab", fin=False) + _frame(9, b"ping") + _frame(0, b"cd", fin=False)
    data += _frame(0, b"ef")
    writer = _write_slowly(b, data)
    got = []
    while len(got) < len(payloads) + 2:
        try:
            got.append(reader.read())
        except socket.timeout:  # a partial frame stays buffered
            continue
    writer.join()
    assert [p for _, p in got[: len(payloads)]] == payloads
    assert got[-2:] == [(9, b"ping"), (1, b"abcdef")]  # control frames may interleave
    assert ws.pongs == [b"ping"]
    with pytest.raises(socket.timeout):
        reader.read()
    b.close()
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        reader.read()


@pytest.mark.parametrize(
    "data",
    [
        bytes((0xC1, 0)),  # RSV1 without an extension
        bytes((0x83, 0)),  # reserved opcode
        bytes((0x09, 0)),  # fragmented ping
        _frame(0, b"x"),  # continuation without a message
        _frame(1, b"a", fin=False) + _frame(1, b"b"),  # new message inside a fragmented one
    ],
)
def test_reader_rejects_broken_framing(pair: Any, data: bytes) -> None:
    a, b = pair
    b.sendall(data)
    reader = FrameReader(_Ws(), a)
    with pytest.raises(websocket.WebSocketProtocolException):
        reader.read()
        reader.read()


@pytest.mark.parametrize("size", SIZES)
def test_writer_frames_websocket_client_can_read(pair: Any, size: int) -> None:
    a, b = pair
    payload = os.urandom(size)
    writer = FrameWriter(_Ws(), a)
    thread = threading.Thread(target=writer.send_text, args=(payload,), daemon=True)
    thread.start()
    parser = websocket._abnf.frame_buffer(b.recv, skip_utf8_validation=True)
    frame = parser.recv_frame()
    thread.join()
    assert (frame.opcode, frame.fin, frame.mask_value is not None) == (1, 1, True)
    assert frame.data == payload
