"""push_raw: arbitrary websocket frames (text, invalid UTF-8 as text, binary) for fuzzing."""

from __future__ import annotations

import json
from typing import Iterator, Tuple

import pytest
import websocket
from _fake_ws_helpers import no_frame_within, open_ticket, recv_json, send_ack, ws_url

from dingsync.testing import FakeDingTalk

TEXT, BINARY = websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY


@pytest.fixture
def fake() -> Iterator[FakeDingTalk]:
    with FakeDingTalk(seed=7) as f:
        yield f


def connect(fake: FakeDingTalk) -> websocket.WebSocket:
    """A hand-made client with websocket-client's UTF-8 check off (as dingsync's)."""
    before = len(fake.connections)
    body = open_ticket(fake).json()
    ws = websocket.create_connection(
        ws_url(body["endpoint"], body["ticket"]), timeout=2, skip_utf8_validation=True
    )
    fake.wait_until(lambda: len(fake.connections) > before, 2.0)
    return ws


def recv_raw(ws: websocket.WebSocket, timeout: float = 2.0) -> Tuple[int, bytes]:
    ws.settimeout(timeout)
    opcode, data = ws.recv_data(control_frame=False)
    return opcode, data


def test_text_bytes_and_binary_arrive_byte_for_byte(fake: FakeDingTalk) -> None:
    """A str goes out as UTF-8 text; bytes go out unchanged, in a text frame even when they are
    not UTF-8, or in a binary frame with binary=True; huge frames too."""
    ws = connect(fake)
    (conn,) = fake.live_connections
    huge = b"x" * (512 * 1024)
    sent = [
        ("not json ✓", False, (TEXT, "not json ✓".encode())),
        (b"\xff\xfe\x00 broken", False, (TEXT, b"\xff\xfe\x00 broken")),
        (b"\x00\x01\x02", True, (BINARY, b"\x00\x01\x02")),
        ('{"type": "EVENT"}', True, (BINARY, b'{"type": "EVENT"}')),
        (huge, False, (TEXT, huge)),
    ]
    ids = [fake.push_raw(data, binary=binary) for data, binary, _ in sent]
    assert [recv_raw(ws) for _ in sent] == [expected for _, _, expected in sent]
    assert [p.message_id for p in fake.pushes] == ids
    fake.wait_until(lambda: all(p.state == "sent" for p in fake.pushes))
    assert all(p.delivered_to == [conn.id] for p in fake.pushes)
    assert conn.frames_sent == len(sent)
    ws.close()


def test_raw_frames_keep_their_place_among_ordinary_pushes(fake: FakeDingTalk) -> None:
    """Garbage before and after a well-formed push arrives in push order; the push's ack is
    recorded; an ack for a messageId the emulator never pushed is a violation."""
    ws = connect(fake)
    fake.push_raw('{"type": "CALLBACK", "headers": [1, 2]}')
    mid = fake.push_chatbot("hello")
    fake.push_raw("[]", binary=True)
    assert recv_raw(ws) == (TEXT, b'{"type": "CALLBACK", "headers": [1, 2]}')
    frame = recv_json(ws)
    assert frame["headers"]["messageId"] == mid
    send_ack(ws, frame)
    assert recv_raw(ws) == (BINARY, b"[]")
    assert fake.wait_for_ack(mid)["code"] == 200
    fake.push_raw(json.dumps({"type": "EVENT", "headers": {"messageId": "made-up"}, "data": ""}))
    recv_raw(ws)
    send_ack(ws, {"headers": {"messageId": "made-up"}, "type": "EVENT"})
    fake.wait_until(lambda: any("made-up" in v for v in fake.violations))
    ws.close()


def test_routing_follows_the_gateway(fake: FakeDingTalk) -> None:
    """Without connection=, a raw frame goes to a live connection that is neither stalled nor
    draining (or waits in pending); with it, to that one. It is never redelivered."""
    fake.redeliver_events_after = fake.redeliver_callbacks_after = 0.05
    first_ws = connect(fake)
    second_ws = connect(fake)
    first, second = fake.connections
    fake.stall(first)
    for _ in range(5):
        fake.push_raw("x")
        assert recv_raw(second_ws) == (TEXT, b"x")
    fake.resume(first)
    fake.push_raw("to-first", connection=first)
    assert recv_raw(first_ws) == (TEXT, b"to-first")
    fake.disconnect(close_after=5, connection=second)
    recv_json(second_ws)  # the disconnect frame
    fake.push_raw("y")
    assert recv_raw(first_ws) == (TEXT, b"y")
    assert no_frame_within(second_ws, 0.1)
    fake.stall(first)
    mid = fake.push_raw("later")
    assert [p.message_id for p in fake.pending] == [mid]
    fake.resume(first)
    assert recv_raw(first_ws) == (TEXT, b"later")
    assert no_frame_within(first_ws, 0.3) and not fake.redeliveries
    first_ws.close()
    second_ws.close()


def test_rejects_other_types(fake: FakeDingTalk) -> None:
    with pytest.raises(TypeError, match="str or bytes"):
        fake.push_raw({"type": "EVENT"})  # type: ignore[arg-type]
