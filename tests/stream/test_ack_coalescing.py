"""Connection.send_coalesced: acks handed in while another thread writes go out in its next
write; none is lost, none is delayed behind a thread that is not writing; failures come back."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, List, Tuple

import pytest

import dingsync
from dingsync.errors import ConnectionClosed
from dingsync.frames import Ack
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


def _writing(
    conn: Connection, ws: _BlockingWs, text: str
) -> Tuple[threading.Thread, List[Tuple[bool, List[str]]]]:
    """Start a thread that sends ``text`` and returns once it is inside its (blocked) write;
    its result lands in the returned list."""
    results: List[Tuple[bool, List[str]]] = []
    writer = threading.Thread(target=lambda: results.append(conn.send_coalesced(text)))
    writer.start()
    assert ws.entered.wait(5)
    return writer, results


def test_acks_handed_in_during_a_write_go_out_with_the_next_one() -> None:
    ws = _BlockingWs()
    conn = _conn(ws)
    writer, results = _writing(conn, ws, "a")
    # The writer is inside its write: these return at once and leave their acks to it.
    assert conn.send_coalesced("b") == (True, [])
    assert conn.send_coalesced("c") == (True, [])
    ws.release.set()
    writer.join(5)
    assert results == [(True, [])]
    assert ws.sent == [b"a", b"b", b"c"]
    assert conn.send_coalesced("d") == (True, [])  # idle: written at once by the caller
    assert ws.sent[-1] == b"d"


def test_a_failed_write_returns_every_ack_it_held() -> None:
    """The writer learns that its own ack was not sent and gets back the ones others had
    handed to it."""
    ws = _BlockingWs(fail=True)
    conn = _conn(ws)
    writer, results = _writing(conn, ws, "a")
    assert conn.send_coalesced("b") == (True, [])
    ws.release.set()
    writer.join(5)
    assert results == [(False, ["b"])]
    assert conn.closed
    assert conn.send_coalesced("c") == (False, [])
    with pytest.raises(ConnectionClosed):
        conn.send("d")


def test_close_waits_for_a_write_in_progress() -> None:
    ws = _BlockingWs()
    conn = _conn(ws)
    writer, _ = _writing(conn, ws, "a")
    assert conn.send_coalesced("b") == (True, [])
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
    assert conn.send_coalesced("a") == (False, [])
    assert conn.send_coalesced("b") == (True, [])
    assert ws.sent == [b"b"]


class _FailsSecondWs(_BlockingWs):
    """The first write (blocked until released) goes through; the second one fails."""

    def send(self, payload: bytes, opcode: Any = None) -> None:
        if self.calls == 1:
            self.fail = True
        super().send(payload, opcode)


def test_a_later_failed_round_keeps_the_writers_own_ack_sent() -> None:
    """The writer's own ack went out in its first write; only the acks handed in for the
    second, failed write come back, so nothing is sent twice."""
    ws = _FailsSecondWs()
    conn = _conn(ws)
    writer, results = _writing(conn, ws, "a")
    assert conn.send_coalesced("b") == (True, [])
    ws.release.set()
    writer.join(5)
    assert ws.sent == [b"a"]
    assert results == [(True, ["b"])]


class _StubConn:
    """A connection whose coalesced write has just failed (it holds another thread's ack)."""

    def __init__(self, number: int, *, closed: bool = False) -> None:
        self.number = number
        self.closed = closed
        self.last_alive = None
        self.sent: List[str] = []

    def send_coalesced(self, text: str, *, hold: bool = False) -> Tuple[bool, List[str]]:
        self.closed = True
        return False, ["other-thread-ack"]

    def send(self, text: str) -> None:
        if self.closed:
            raise ConnectionClosed("closed")
        self.sent.append(text)


def _client_with(current: Any) -> dingsync.StreamClient:
    client = dingsync.StreamClient(
        dingsync.Credentials(client_id="id", client_secret="secret"), dingsync.Router()
    )
    client._current = current
    client._count("acks_sent")  # the other thread counted its ack when it handed it in
    return client


def test_acks_of_a_failed_write_go_to_the_current_connection_and_count_once() -> None:
    """After the old connection's write fails, the other thread's ack and this thread's own
    go out on the current connection; each is counted once."""
    current = _StubConn(2)
    client = _client_with(current)
    client._send_ack(_StubConn(1), Ack.ok("m-own", {"response": None}))  # type: ignore[arg-type]
    assert current.sent[0] == "other-thread-ack"
    assert json.loads(current.sent[1])["headers"]["messageId"] == "m-own"
    assert client.stats.acks_sent == 2


def test_acks_that_cannot_be_sent_anywhere_are_not_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no other open connection, neither ack is sent, and neither stays counted."""
    old = _StubConn(1)
    client = _client_with(old)
    with caplog.at_level(logging.WARNING, logger="dingsync"):
        client._send_ack(old, Ack.ok("m-own", {"response": None}))  # type: ignore[arg-type]
    assert client.stats.acks_sent == 0
    assert sum("DingTalk may deliver it again" in r.getMessage() for r in caplog.records) == 2
