"""Fault knobs of the fake gateway: disconnect, drop, stall/resume, redelivery, random spread,
and a clean, fast stop."""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from typing import List

import pytest
import websocket
from _fake_ws_helpers import connect, no_frame_within, recv_json, send_ack

from dingsync.testing import FakeDingTalk


@pytest.fixture
def fake():
    with FakeDingTalk(seed=1234) as f:
        yield f


def test_disconnect_frame_then_close_after_delay(fake):
    """disconnect sends the real frame, pushes move to the other connection at once, and the
    old websocket is closed after close_after seconds (not before)."""
    old = connect(fake)
    new = connect(fake)
    first, second = fake.connections
    fake.disconnect(close_after=0.3, connection=first)
    frame = recv_json(old)
    assert frame["type"] == "SYSTEM" and frame["headers"]["topic"] == "disconnect"
    assert json.loads(frame["data"]) == {"reason": "persistent connection is timeout"}
    assert first.draining and first.alive
    ids = [fake.push_chatbot(f"m{i}") for i in range(5)]
    assert [recv_json(new)["headers"]["messageId"] for _ in ids] == ids
    assert first.alive  # still open: the close comes later
    old.settimeout(2)
    opcode, _ = old.recv_data_frame(control_frame=True)  # the client answers the close
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    old.shutdown()
    assert first.wait_closed(2.0)
    assert first.close_code == 1000 and second.alive
    new.close()


def test_pushes_after_disconnect_wait_for_the_next_connection(fake):
    """With the only connection draining, a push waits in pending and reaches the next one."""
    old = connect(fake)
    fake.disconnect(close_after=5)
    recv_json(old)
    mid = fake.push_chatbot("later")
    assert no_frame_within(old, 0.2)
    assert [p.message_id for p in fake.pending] == [mid]
    new = connect(fake)
    assert recv_json(new)["headers"]["messageId"] == mid
    old.close()
    new.close()


def test_drop_closes_without_a_close_frame(fake):
    """drop shuts TCP down abruptly: the client sees the socket die, not a close frame."""
    ws = connect(fake)
    conn = fake.drop()
    assert not conn.alive
    ws.settimeout(2)
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.recv_data_frame(control_frame=True)
    assert conn.wait_closed(1)


def test_stall_suppresses_pongs_and_pushes_until_resume(fake):
    """A stalled connection answers no websocket ping and gets no push; after resume the held
    push arrives and pings are answered again."""
    ws = connect(fake)
    ws.ping(b"are-you-there")
    ws.settimeout(1)
    assert ws.recv_data_frame(control_frame=True)[0] == websocket.ABNF.OPCODE_PONG  # normally
    conn = fake.stall()
    assert conn.stalled and conn.alive
    ws.ping(b"hello?")
    mid = fake.push_chatbot("held")
    assert no_frame_within(ws, 0.4)  # neither the pong nor the push
    fake.resume()
    ws.settimeout(2)
    ws.ping(b"back?")
    # websockets >= 16 also answers the ping held during the stall; 15 (Python 3.9) drops it.
    pongs: List[bytes] = []
    texts: List[str] = []
    while b"back?" not in pongs or not texts:  # in either order; a missing one times out
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_PONG:
            pongs.append(frame.data)
        elif opcode == websocket.ABNF.OPCODE_TEXT:
            texts.append(json.loads(frame.data)["headers"]["messageId"])
    assert texts == [mid]
    ws.close()


def test_redelivery_of_unacked_callback_keeps_the_message_id(fake):
    """redeliver_callbacks_after: an un-acked chatbot frame comes again with the same messageId;
    once acked, it stops."""
    fake.redeliver_callbacks_after = 0.2
    ws = connect(fake)
    mid = fake.push_chatbot("again")
    first = recv_json(ws)
    again = recv_json(ws, timeout=2)
    assert again["headers"]["messageId"] == mid == first["headers"]["messageId"]
    assert fake.redeliveries and fake.redeliveries[0].message_id == mid
    send_ack(ws, again)
    fake.wait_for_ack(mid)
    count = len(fake.redeliveries)
    assert no_frame_within(ws, 0.4) and len(fake.redeliveries) == count
    ws.close()


def test_no_redelivery_by_default(fake):
    """Redelivery is off by default: an un-acked frame is not pushed again."""
    ws = connect(fake)
    fake.push_chatbot("once")
    recv_json(ws)
    assert no_frame_within(ws, 0.5)
    assert fake.redeliveries == []
    ws.close()


def test_event_acked_later_is_redelivered(fake):
    """An EVENT acked with status LATER counts as not done and is redelivered."""
    fake.redeliver_events_after = 0.2
    ws = connect(fake)
    mid = fake.push_event("user_add_org", {"userId": ["u"]})
    frame = recv_json(ws)
    send_ack(ws, frame, {"status": "LATER", "message": "later"})
    again = recv_json(ws, timeout=2)
    assert again["headers"]["messageId"] == mid
    send_ack(ws, again, {"status": "SUCCESS", "message": "success"})
    ws.close()


def _spread(seed, pushes=40):
    with FakeDingTalk(seed=seed) as f:
        a, b = connect(f), connect(f)
        for i in range(pushes):
            f.push_event("tick", {"i": i})
        f.wait_until(lambda: f.push_stats.frames_sent == pushes, 2)
        where = [p.delivered_to[0] for p in f.pushes]
        ids = [c.id for c in f.connections]
        a.close()
        b.close()
        return [ids.index(w) for w in where]


def test_random_spread_over_connections_is_seeded():
    """Pushes spread randomly over live connections: both get some; a seed makes it repeatable."""
    first = _spread(seed=7)
    assert 0 < first.count(0) < len(first)
    assert _spread(seed=7) == first


def test_redelivery_may_go_to_another_connection(fake):
    """A frame un-acked on a dropped connection is redelivered to a live one."""
    fake.redeliver_events_after = 0.2
    doomed = connect(fake)
    mid = fake.push_event("tick", {})
    recv_json(doomed)
    fake.drop()
    survivor = connect(fake)
    assert recv_json(survivor)["headers"]["messageId"] == mid
    assert fake.redeliveries[0].previous_connections == (fake.connections[0].id,)
    survivor.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/fd")
def test_start_and_stop_leave_no_descriptor_open() -> None:
    """A test session starts an emulator per test: one that kept descriptors (websockets 15
    kept two) runs the session out of them after some hundreds."""
    with FakeDingTalk():
        pass  # first use: imports, caches
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with FakeDingTalk():
            pass
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= before


def test_stop_is_fast_closes_clients_and_leaks_no_threads():
    """stop() closes every connection (even stalled ones) in under a second, and the emulator's
    threads are gone afterwards."""
    baseline = set(threading.enumerate())
    fake = FakeDingTalk().start()
    quiet = connect(fake)
    stalled = connect(fake)
    fake.stall(fake.connections[1])
    fake.push_many(50)
    t0 = time.monotonic()
    fake.stop()
    assert time.monotonic() - t0 < 1.0
    assert all(not c.alive for c in fake.connections)
    for ws in (quiet, stalled):
        ws.settimeout(1)
        try:
            opcode, _ = ws.recv_data_frame(control_frame=True)
            while opcode != websocket.ABNF.OPCODE_CLOSE:
                opcode, _ = ws.recv_data_frame(control_frame=True)
        except websocket.WebSocketConnectionClosedException:
            pass
    deadline = time.monotonic() + 1
    while set(threading.enumerate()) - baseline and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) - baseline == set()


def test_stop_does_not_hang_on_a_client_that_stopped_reading():
    """With socket buffers full (client never reads) the sender is blocked; stop() still returns
    quickly."""
    fake = FakeDingTalk().start()
    ws = connect(fake)
    fake.push_many(100, text="x" * 200_000 + "{i}")  # ~20 MB: far more than the buffers hold
    time.sleep(0.2)
    t0 = time.monotonic()
    fake.stop()
    assert time.monotonic() - t0 < 1.0
    ws.close()
