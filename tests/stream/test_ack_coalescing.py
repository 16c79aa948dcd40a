"""Connection.send_coalesced: acks handed in while another thread writes go out in its next
write; none is lost, none is delayed behind a thread that is not writing; failures come back."""

from __future__ import annotations

import threading
from typing import Any, List

import pytest

from dingsync.errors import ConnectionClosed
from dingsync.stream.connection import Connection


class _BlockingWs:
    """A stand-in websocket whose first send blocks until released."""

    def __init__(self, *, fail: bool = False) -> None:
        self.sent: List[bytes] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = fail
        self.calls = 0

    def send(self, payload: bytes, opcode: Any = None) -> None:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            assert self.release.wait(5)
        if self.fail:
            raise OSError("broken pipe")
        self.sent.append(payload)

    def close(self, timeout: float = 1.0) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _conn(ws: _BlockingWs) -> Connection:
    return Connection(ws, number=1, endpoint="wss://gw")


def test_acks_handed_in_during_a_write_go_out_with_the_next_one() -> None:
    ws = _BlockingWs()
    conn = _conn(ws)
    results: List[List[str]] = []
    writer = threading.Thread(target=lambda: results.append(conn.send_coalesced("a")))
    writer.start()
    assert ws.entered.wait(5)
    # The writer is inside its write: these return at once and leave their acks to it.
    assert conn.send_coalesced("b") == []
    assert conn.send_coalesced("c") == []
    ws.release.set()
    writer.join(5)
    assert results == [[]]
    assert ws.sent == [b"a", b"b", b"c"]
    assert conn.send_coalesced("d") == []  # idle: written at once by the caller
    assert ws.sent[-1] == b"d"


def test_a_failed_write_returns_every_ack_it_held() -> None:
    ws = _BlockingWs(fail=True)
    conn = _conn(ws)
    results: List[List[str]] = []
    writer = threading.Thread(target=lambda: results.append(conn.send_coalesced("a")))
    writer.start()
    assert ws.entered.wait(5)
    assert conn.send_coalesced("b") == []
    ws.release.set()
    writer.join(5)
    assert results == [["a", "b"]]
    assert conn.closed
    assert conn.send_coalesced("c") == ["c"]
    with pytest.raises(ConnectionClosed):
        conn.send("d")


def test_close_waits_for_a_write_in_progress() -> None:
    ws = _BlockingWs()
    conn = _conn(ws)
    writer = threading.Thread(target=conn.send_coalesced, args=("a",))
    writer.start()
    assert ws.entered.wait(5)
    assert conn.send_coalesced("b") == []
    threading.Timer(0.05, ws.release.set).start()
    conn.close(timeout=5)
    writer.join(5)
    assert ws.sent == [b"a", b"b"]


class _BuggyWs(_BlockingWs):
    """A websocket whose first write fails with an error nobody planned for."""

    def send(self, payload: bytes, opcode: Any = None) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("bug in a lower layer")
        self.sent.append(payload)


def test_an_unexpected_write_error_never_leaves_acks_stuck_in_the_outbox() -> None:
    """Any failure hands the acks back and frees the outbox, so the next ack is written."""
    ws = _BuggyWs()
    conn = _conn(ws)
    assert conn.send_coalesced("a") == ["a"]
    assert conn.send_coalesced("b") == []
    assert ws.sent == [b"b"]
