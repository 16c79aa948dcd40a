"""Frames pushed by the fake gateway, acks and their validation, pings, pending pushes."""

from __future__ import annotations

import json
import threading

import pytest
import websocket
from _fake_ws_helpers import connect, no_frame_within, recv_json, send_ack

from dingsync.testing import payloads


def _all_strings(headers):
    return all(isinstance(v, str) for v in headers.values())


def test_chatbot_frame_is_exactly_the_wire_shape(fake):
    """CALLBACK frame: specVersion, string headers with appId/connectionId, double-encoded data."""
    ws = connect(fake)
    (conn,) = fake.connections
    mid = fake.push_chatbot("hello", session_webhook_ttl=60.0)
    frame = recv_json(ws)
    assert list(frame) == ["specVersion", "type", "headers", "data"]
    assert frame["specVersion"] == "1.0" and frame["type"] == "CALLBACK"
    headers = frame["headers"]
    assert _all_strings(headers)
    assert headers["topic"] == payloads.CHATBOT_TOPIC
    assert headers["messageId"] == mid
    assert headers["contentType"] == "application/json"
    assert headers["connectionId"] == conn.id and headers["appId"] == fake.app_id
    assert headers["time"].isdigit()
    assert isinstance(frame["data"], str)
    data = json.loads(frame["data"])
    assert data["msgtype"] == "text" and data["text"] == {"content": "hello"}
    assert data["conversationType"] == "1" and data["senderStaffId"] == "user-1"
    assert data["sessionWebhook"].startswith(fake.oapi_base + "/robot/sendBySession?session=")
    assert data["sessionWebhookExpiredTime"] == data["createAt"] + 60_000
    assert data["robotCode"] == fake.client_id
    ws.close()


def test_event_frame_has_star_topic_and_event_headers(fake):
    """EVENT frame: topic "*", eventId/eventBornTime/eventCorpId/eventType/eventUnifiedAppId."""
    ws = connect(fake)
    fake.push_event("user_add_org", {"userId": ["u1"]}, eventCorpId="dingcorp42")
    frame = recv_json(ws)
    headers = frame["headers"]
    assert frame["type"] == "EVENT" and headers["topic"] == "*"
    assert _all_strings(headers)
    assert headers["eventType"] == "user_add_org" and headers["eventCorpId"] == "dingcorp42"
    assert {"eventId", "eventBornTime", "eventUnifiedAppId"} <= set(headers)
    assert json.loads(frame["data"]) == {"userId": ["u1"]}
    ws.close()


def test_card_callback_is_triple_encoded(fake):
    """Card callback data is a string whose content/value/extension are JSON strings too."""
    ws = connect(fake)
    fake.push_card_callback("track-9", {"action": "like"}, user_id="u7", action_ids=("btn",))
    frame = recv_json(ws)
    assert frame["headers"]["topic"] == payloads.CARD_CALLBACK_TOPIC
    data = json.loads(frame["data"])
    assert data["outTrackId"] == "track-9" and data["userId"] == "u7"
    for key in ("content", "value", "extension"):
        assert isinstance(data[key], str)
    private = json.loads(data["content"])["cardPrivateData"]
    assert private == {"actionIds": ["btn"], "params": {"action": "like"}}
    ws.close()


@pytest.mark.parametrize("msgtype", payloads.CHATBOT_MSGTYPES)
def test_every_chatbot_msgtype_has_its_content(fake, msgtype):
    """Non-text messages carry a `content` object; text ones carry `text`."""
    ws = connect(fake)
    fake.push_chatbot("words", msgtype=msgtype)
    data = json.loads(recv_json(ws)["data"])
    assert data["msgtype"] == msgtype
    assert ("text" in data) == (msgtype == "text")
    assert ("content" in data) == (msgtype != "text")
    ws.close()


def test_group_message_fields_and_extra_fields(fake):
    """A group message has a title and isInAtList; extra fields are merged into data."""
    ws = connect(fake)
    fake.push_chatbot(" hi", conversation_type="2", at_users=["bot"], senderPlatform="Win")
    data = json.loads(recv_json(ws)["data"])
    assert data["conversationType"] == "2" and data["isInAtList"] is True
    assert data["conversationTitle"] and data["senderPlatform"] == "Win"
    assert data["atUsers"][0]["staffId"] == "bot"
    ws.close()


def test_ack_is_recorded_with_its_connection(fake):
    """wait_for_ack returns the decoded ack; acks carry the connection id; no violations."""
    ws = connect(fake)
    mid = fake.push_chatbot("x")
    send_ack(ws, recv_json(ws))
    ack = fake.wait_for_ack(mid)
    assert ack["code"] == 200 and ack["headers"]["messageId"] == mid
    assert ack.connection_id == fake.connections[0].id
    assert fake.acks == [ack]
    assert fake.violations == []
    ws.close()


def test_fragmented_and_whole_acks_are_both_recorded(fake):
    """Whole acks are handled on the socket's reader thread, fragmented ones through websockets'
    message queue: both count, in the order they were sent."""
    ws = connect(fake)
    first, second = fake.push_chatbot("a"), fake.push_chatbot("b")
    for _ in range(2):
        recv_json(ws)
    text = json.dumps(_raw_ack(first)).encode()
    ws.send_frame(websocket.ABNF.create_frame(text[:20], websocket.ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame(text[20:], websocket.ABNF.OPCODE_CONT, fin=1))
    fake.wait_for_ack(first)
    ws.send(json.dumps(_raw_ack(second)))
    fake.wait_for_ack(second)
    assert [a["headers"]["messageId"] for a in fake.acks] == [first, second]
    assert fake.violations == []
    ws.close()


def _raw_ack(mid):
    return {
        "code": 200,
        "headers": {"messageId": mid, "contentType": "application/json"},
        "message": "OK",
        "data": "{}",
    }


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda a: a.update(code="200"), "code"),
        (lambda a: a.pop("code"), "code"),
        (lambda a: a.update(data={"response": None}), "data"),
        (lambda a: a.update(data="{not json"), "data"),
        (lambda a: a["headers"].pop("contentType"), "headers.contentType"),
        (lambda a: a["headers"].update(messageId="never-pushed"), "headers.messageId"),
        (lambda a: a["headers"].update(messageId=12), "headers.messageId"),
        (lambda a: a.pop("message"), "message"),
        (lambda a: a.update(message=None), "message"),
    ],
)
def test_ack_violations_name_the_field(fake, mutate, field):
    """Each malformed ack is recorded in violations, naming the offending field."""
    ws = connect(fake)
    mid = fake.push_chatbot("x")
    recv_json(ws)
    ack = _raw_ack(mid)
    mutate(ack)
    ws.send(json.dumps(ack))
    fake.wait_until(lambda: fake.violations, 2)
    assert any(f": {field}:" in v for v in fake.violations), fake.violations
    ws.close()


def test_non_json_ack_is_a_frame_violation(fake):
    """Text that is not a JSON object is recorded as a `frame` violation."""
    ws = connect(fake)
    ws.send("hello?")
    fake.wait_until(lambda: fake.violations, 2)
    assert "frame: not a JSON object" in fake.violations[0]
    ws.close()


def test_extra_headers_and_disconnect_acks_are_tolerated(fake):
    """Extra ack headers (Java's time) and an ack of SYSTEM disconnect are not violations."""
    ws = connect(fake)
    mid = fake.push_chatbot("x")
    recv_json(ws)
    ack = _raw_ack(mid)
    ack["headers"]["time"] = "1690000000000"
    ws.send(json.dumps(ack))
    dmid = fake.disconnect(close_after=5)
    send_ack(ws, recv_json(ws))
    fake.wait_for_ack(dmid)
    assert fake.violations == []
    ws.close()


def test_wait_for_ack_times_out_with_a_clear_message(fake):
    """No ack: TimeoutError saying where the frame is (here: pending, nobody connected)."""
    mid = fake.push_chatbot("x")
    with pytest.raises(TimeoutError, match="pending"):
        fake.wait_for_ack(mid, timeout=0.1)


def test_ping_echo_is_checked(fake):
    """A SYSTEM ping carries a unique opaque; an exact echo is a matched pong."""
    ws = connect(fake)
    mid = fake.ping()
    frame = recv_json(ws)
    assert frame["type"] == "SYSTEM" and frame["headers"]["topic"] == "ping"
    assert set(json.loads(frame["data"])) == {"opaque"}
    send_ack(ws, frame)
    fake.wait_for_ack(mid)
    (pong,) = fake.pongs
    assert pong.matched and pong.message_id == mid
    assert fake.violations == []
    ws.close()


def test_wrong_ping_echo_is_a_violation(fake):
    """Echoing another opaque is recorded as a data.opaque violation."""
    ws = connect(fake)
    mid = fake.ping()
    send_ack(ws, recv_json(ws), {"opaque": "something-else"})
    fake.wait_for_ack(mid)
    assert not fake.pongs[0].matched
    assert any("data.opaque" in v for v in fake.violations)
    ws.close()


def test_pushes_follow_subscriptions_and_wait_pending(fake):
    """A push goes only to a connection subscribed to its topic; otherwise it waits in pending
    and is delivered as soon as a subscribed connection appears."""
    events_only = connect(fake, [{"type": "EVENT", "topic": "*"}])
    mid = fake.push_chatbot("for the bot")
    assert no_frame_within(events_only, 0.2)
    assert [p.message_id for p in fake.pending] == [mid]
    bot = connect(fake, [{"type": "CALLBACK", "topic": payloads.CHATBOT_TOPIC}])
    assert recv_json(bot)["headers"]["messageId"] == mid
    assert fake.pending == []
    events_only.close()
    bot.close()


def test_pushes_are_safe_from_many_threads(fake):
    """Concurrent push_* calls from several threads each arrive exactly once."""
    ws = connect(fake)
    ids = []
    lock = threading.Lock()

    def worker():
        for _ in range(25):
            mid = fake.push_event("tick", {})
            with lock:
                ids.append(mid)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [recv_json(ws)["headers"]["messageId"] for _ in range(100)]
    assert sorted(got) == sorted(ids) and len(set(got)) == 100
    ws.close()


def test_push_many_preserialised_and_push_stats(fake):
    """push_many queues prepared frames in order; push_stats counts what the sender wrote."""
    ws = connect(fake)
    frames = fake.prepare_chatbot(300)
    ids = fake.push_many(frames)
    got = [recv_json(ws)["headers"]["messageId"] for _ in range(300)]
    assert got == ids
    fake.wait_until(lambda: fake.push_stats.frames_sent == 300, 2)
    stats = fake.push_stats
    assert stats.seconds > 0 and stats.frames_per_second > 0 and stats.sender_cpu_seconds >= 0
    fake.reset_push_stats()
    fake.push_many(5)
    for _ in range(5):
        recv_json(ws)
    fake.wait_until(lambda: fake.push_stats.frames_sent == 5, 2)
    ws.close()


def test_a_burst_goes_out_in_a_few_socket_writes(fake):
    """The sender writes up to 64 queued frames per system call (so the emulator keeps up with
    the clients it benchmarks), and the client still reads each frame whole and in order."""
    ws = connect(fake)
    fake.wait_for_connections(1, timeout=2)
    gate = fake.live_connections[0]._ws.gate
    writes = []

    def sendall(data, *args):
        writes.append(len(data))
        return gate.raw.sendall(data, *args)

    gate.sendall = sendall  # an instance attribute wins over the gate's __getattr__
    ids = fake.push_many(fake.prepare_chatbot(300))
    got = [recv_json(ws)["headers"]["messageId"] for _ in range(300)]
    assert got == ids
    assert 1 <= len(writes) <= 10, writes
    ws.close()


def test_push_frame_sends_raw_frames_as_given(fake):
    """push_frame sends a string byte for byte and routes by its type/topic."""
    ws = connect(fake)
    raw = '{"specVersion":"1.0","type":"EVENT","headers":{"messageId":"m-raw","topic":"*"},"data":"{}"}'
    assert fake.push_frame(raw) == "m-raw"
    ws.settimeout(2)
    assert ws.recv() == raw
    ws.close()


def test_dingtalk_fixture_gives_a_started_emulator(dingtalk):
    """The plugin's fixture yields a started FakeDingTalk that serves the gateway."""
    ws = connect(dingtalk)
    mid = dingtalk.push_chatbot("via fixture")
    send_ack(ws, recv_json(ws))
    assert dingtalk.wait_for_ack(mid)["code"] == 200
    ws.close()


def test_keepalive_knob_sends_server_pings(fake):
    """With keepalive_interval set, the server pings new connections (off by default)."""
    plain = connect(fake)
    plain.settimeout(0.4)
    with pytest.raises(websocket.WebSocketTimeoutException):
        plain.recv_data_frame(control_frame=True)
    fake.keepalive_interval = 0.1
    ws = connect(fake)
    ws.settimeout(2)
    opcode, _ = ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_PING
    plain.close()
    ws.close()


def test_card_callback_ack_response_is_handed_to_the_card_store(fake, monkeypatch):
    """A 200 ack of a card callback passes (outTrackId, userId, data.response) to the OpenAPI
    side's _apply_card_callback_response, which updates its card store."""
    seen = []
    monkeypatch.setattr(
        fake, "_apply_card_callback_response", lambda *a: seen.append(a), raising=False
    )
    ws = connect(fake)
    mid = fake.push_card_callback("track-1", {"action": "ok"}, user_id="u9")
    response = {"cardData": {"cardParamMap": {"status": "done"}}}
    send_ack(ws, recv_json(ws), {"response": response})
    fake.wait_for_ack(mid)
    assert seen == [("track-1", "u9", response)]
    ws.close()
