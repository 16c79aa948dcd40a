"""StreamClient against the emulator: acks, pings, errors, dedupe, backpressure, stop."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Iterable, List, Set

import pytest

import dingsync
from dingsync.errors import StreamError
from dingsync.testing import FakeDingTalk, payloads

from .conftest import MakeClient


def acks_for(fake: FakeDingTalk, message_id: str) -> List[Any]:
    return [a for a in list(fake.acks) if a["headers"]["messageId"] == message_id]


def ack_data(ack: Any) -> Any:
    return json.loads(ack["data"])


class Calls:
    """Thread-safe record of handler calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: List[Any] = []

    def add(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)

    def __len__(self) -> int:
        with self._lock:
            return len(self.items)


def test_chatbot_message_is_acked_with_the_handler_result(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """A dict returned by a chatbot handler becomes {"response": dict} in a 200 ack."""
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> Any:
        return {"echo": msg.text}

    make_client(route)
    mid = dingtalk.push_chatbot("hello")
    ack = dingtalk.wait_for_ack(mid)
    assert ack["code"] == 200 and ack["message"] == "OK"
    assert ack_data(ack) == {"response": {"echo": "hello"}}
    assert dingtalk.violations == []
    request = dingtalk.open_requests[0]
    assert [(s.type, s.topic) for s in request.subscriptions] == [
        ("CALLBACK", "/v1.0/im/bot/messages/get")
    ]
    assert request.ua == f"dingsync/{dingsync.__version__}"
    assert request.local_ip and "pid=" in request.local_ip


def test_ping_is_answered_while_every_handler_thread_is_blocked(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """SYSTEM ping is answered by the reader even when all handler threads are busy and more
    messages are queued behind them."""
    release = threading.Event()
    started = Calls()
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        started.add(msg.msg_id)
        release.wait(10)

    client = make_client(route, concurrency=2, max_pending=8)
    try:
        ids = [dingtalk.push_chatbot(f"block {i}") for i in range(5)]
        dingtalk.wait_until(lambda: len(started) == 2, 5)
        ping = dingtalk.ping()
        t0 = time.monotonic()
        ack = dingtalk.wait_for_ack(ping, timeout=2)
        assert time.monotonic() - t0 < 1.0
        assert ack["code"] == 200 and ack["message"] == "OK"
        assert dingtalk.pongs[-1].matched
        assert client.stats.in_flight == 5
    finally:
        release.set()
    dingtalk.wait_for_acks(ids, timeout=5)


def test_handler_exception_gets_500_and_the_next_message_is_handled(
    dingtalk: FakeDingTalk, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising handler is logged with the message id and answered 500; the loop goes on."""
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> str:
        if msg.text == "boom":
            raise RuntimeError("handler bug")
        return "fine"

    client = make_client(route)
    with caplog.at_level(logging.ERROR, logger="dingsync"):
        bad = dingtalk.push_chatbot("boom")
        ack = dingtalk.wait_for_ack(bad)
    assert ack["code"] == 500
    assert ack_data(ack) == {"response": None}
    good = dingtalk.push_chatbot("next")
    assert ack_data(dingtalk.wait_for_ack(good)) == {"response": "fine"}
    failure = [r for r in caplog.records if r.exc_info and bad in r.getMessage()]
    assert failure and failure[0].exc_info[1].args == ("handler bug",)  # type: ignore[index]
    assert client.stats.handler_errors == 1


def test_event_acks_success_and_a_failing_event_is_retried_as_redelivered(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """Events ack SUCCESS; a failure acks 500 LATER, and the redelivery runs the handler again
    with ctx.redelivered set."""
    route = dingsync.Router()
    seen = Calls()

    @route.event("user_add_org")
    def on_join(ev: dingsync.Event, ctx: dingsync.Context) -> None:
        seen.add((ev.data["userId"], ctx.redelivered))
        if len(seen) == 1:
            raise ValueError("database down")

    make_client(route)
    dingtalk.redeliver_events_after = 0.2
    mid = dingtalk.push_event("user_add_org", {"userId": ["u1"]})
    first = dingtalk.wait_for_ack(mid)
    assert first["code"] == 500
    assert ack_data(first)["status"] == "LATER"
    dingtalk.wait_until(lambda: len(acks_for(dingtalk, mid)) == 2, 5)
    second = acks_for(dingtalk, mid)[1]
    assert second["code"] == 200
    assert ack_data(second) == {"status": "SUCCESS", "message": "success"}
    assert seen.items == [(["u1"], False), (["u1"], True)]


def test_card_callback_response_is_rendered_with_string_values(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """A CardResponse becomes data.response with cardParamMap strings."""
    route = dingsync.Router()

    @route.card_callback
    def on_click(cb: dingsync.CardCallback, ctx: dingsync.Context) -> dingsync.CardResponse:
        return dingsync.CardResponse(card_data={"clicked": cb.params["action"], "n": 2})

    make_client(route)
    mid = dingtalk.push_card_callback("track-1", {"action": "like"})
    response = ack_data(dingtalk.wait_for_ack(mid))["response"]
    assert response["cardData"] == {"cardParamMap": {"clicked": "like", "n": "2"}}


def test_receipt_routes_are_acked_before_the_handler_finishes(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """ack="receipt" answers at once, even while the handler is still running."""
    release = threading.Event()
    route = dingsync.Router()

    @route.chatbot(ack="receipt")
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        release.wait(10)

    make_client(route)
    try:
        mid = dingtalk.push_chatbot("slow")
        ack = dingtalk.wait_for_ack(mid, timeout=2)
        assert ack["code"] == 200 and ack_data(ack) == {"response": None}
    finally:
        release.set()


def test_unknown_topic_is_answered_404(dingtalk: FakeDingTalk, make_client: MakeClient) -> None:
    """A CALLBACK topic without a handler gets a 404 ack and the connection stays."""
    route = dingsync.Router()
    route.chatbot(lambda msg, ctx: None)
    make_client(route)
    conn = dingtalk.wait_for_connections(1)[0]
    frame = payloads.frame("CALLBACK", "/v1.0/not/registered", {"x": 1})
    mid = dingtalk.push_frame(frame, connection=conn)
    ack = dingtalk.wait_for_ack(mid)
    assert ack["code"] == 404
    assert dingtalk.wait_for_ack(dingtalk.push_chatbot("still here"))["code"] == 200
    assert len(dingtalk.open_requests) == 1


def test_malformed_frames_are_skipped_and_the_connection_kept(
    dingtalk: FakeDingTalk, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Broken JSON is logged and skipped; a frame with a messageId but a bad envelope or bad
    payload is acked 400; the next message is handled on the same connection."""
    route = dingsync.Router()
    handled = Calls()
    route.chatbot(lambda msg, ctx: handled.add(msg.text))
    client = make_client(route)
    conn = dingtalk.wait_for_connections(1)[0]
    with caplog.at_level(logging.WARNING, logger="dingsync"):
        dingtalk.push_frame("{this is not json", connection=conn)
        bad_headers = dingtalk.push_frame(
            '{"type":"CALLBACK","headers":{"messageId":"bad-1","topic":7.5},"data":"{}"}',
            connection=conn,
        )
        bad_payload = dingtalk.push_frame(
            payloads.frame("CALLBACK", payloads.CHATBOT_TOPIC, {"text": {"content": "x"}}),
            connection=conn,
        )
        assert dingtalk.wait_for_ack(bad_headers)["code"] == 400
        assert dingtalk.wait_for_ack(bad_payload)["code"] == 400
    good = dingtalk.push_chatbot("after the garbage")
    assert dingtalk.wait_for_ack(good)["code"] == 200
    assert handled.items == ["after the garbage"]
    assert len(dingtalk.open_requests) == 1 and client.stats.reconnects == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("malformed frame" in m and "not valid JSON" in m for m in messages)
    assert any("malformed payload" in m and "msgId" in m for m in messages)


def test_redelivered_message_runs_the_handler_once_and_repeats_the_ack(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """A redelivery while the handler runs waits for its ack; a later duplicate (same
    messageId) is answered from the dedupe store; the handler ran once."""
    route = dingsync.Router()
    calls = Calls()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> str:
        calls.add(msg.msg_id)
        time.sleep(0.6)
        return "done"

    client = make_client(route)
    dingtalk.redeliver_callbacks_after = 0.2
    mid = dingtalk.push_chatbot("slow one")
    dingtalk.wait_until(lambda: len(dingtalk.redeliveries) >= 1, 5)
    # Once the first ack is in, no further redelivery starts: every delivery is then acked.
    dingtalk.wait_until(lambda: len(acks_for(dingtalk, mid)) >= 1 + len(dingtalk.redeliveries), 5)
    dingtalk.redeliver_callbacks_after = None
    acks = acks_for(dingtalk, mid)
    assert {a["code"] for a in acks} == {200}
    assert {a["data"] for a in acks} == {'{"response":"done"}'}

    # The same frame pushed again, byte for byte (same messageId and msgId).
    push = next(p for p in dingtalk.pushes if p.message_id == mid)
    before = len(acks_for(dingtalk, mid))
    dingtalk.push_frame(push.frame)
    dingtalk.wait_until(lambda: len(acks_for(dingtalk, mid)) >= before + 1, 5)
    assert acks_for(dingtalk, mid)[-1]["data"] == '{"response":"done"}'
    assert len(calls) == 1
    assert client.stats.redeliveries_skipped >= 2


def test_same_msg_id_under_a_new_message_id_is_not_run_twice(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """Chatbot messages are also deduped on data.msgId (redeliveries may change messageId)."""
    route = dingsync.Router()
    calls = Calls()
    route.chatbot(lambda msg, ctx: calls.add(msg.msg_id))
    make_client(route)
    first = dingtalk.push_chatbot("once", msg_id="msg-fixed")
    dingtalk.wait_for_ack(first)
    second = dingtalk.push_chatbot("once", msg_id="msg-fixed")
    assert dingtalk.wait_for_ack(second)["code"] == 200
    assert calls.items == ["msg-fixed"]


def test_backpressure_bounds_what_is_read_and_everything_is_acked(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """With handlers stuck, the reader stops after concurrency + max_pending frames (+1 it
    holds); once they resume, every message is acked."""
    release = threading.Event()
    route = dingsync.Router()
    started = Calls()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        started.add(msg.msg_id)
        release.wait(10)

    client = make_client(route, concurrency=2, max_pending=3)
    try:
        ids = dingtalk.push_many(40)
        dingtalk.wait_until(lambda: len(started) == 2, 5)
        time.sleep(0.3)  # give a runaway reader the chance to show itself
        stats = client.stats
        assert stats.in_flight <= 5
        assert stats.frames_received <= 6
        assert client.health()[0]  # waiting on handlers is not a dead connection
    finally:
        release.set()
    dingtalk.wait_for_acks(ids, timeout=10)
    dingtalk.wait_until(lambda: client.stats.in_flight == 0)  # released just after the ack
    assert len(started) == 40


def test_stop_waits_for_the_running_handler_and_sends_its_ack(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """stop() stops intake, lets the running handler finish and acks it before closing."""
    route = dingsync.Router()
    started, finished = threading.Event(), threading.Event()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> str:
        started.set()
        time.sleep(0.5)
        finished.set()
        return "finished"

    client = make_client(route)
    mid = dingtalk.push_chatbot("mid-flight")
    assert started.wait(5)
    client.stop(timeout=5)
    assert finished.is_set()
    assert ack_data(dingtalk.wait_for_ack(mid, timeout=1)) == {"response": "finished"}
    assert not client.connected
    dingtalk.wait_until(lambda: not dingtalk.live_connections, 5)
    client.stop()  # idempotent


def test_hard_stop_does_not_wait_for_handlers(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """stop(drain=False) returns promptly even with a handler stuck."""
    release = threading.Event()
    started = threading.Event()
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        started.set()
        release.wait(10)

    client = make_client(route)
    dingtalk.push_chatbot("stuck")
    assert started.wait(5)
    t0 = time.monotonic()
    client.stop(timeout=5, drain=False)
    assert time.monotonic() - t0 < 1.5
    release.set()


def test_lifecycle_context_manager_stats_and_health(dingtalk: FakeDingTalk) -> None:
    """The client works as a context manager, reports health, and cannot be restarted."""
    route = dingsync.Router()
    route.chatbot(lambda msg, ctx: None)
    client = dingsync.StreamClient(
        dingtalk.credentials,
        route,
        endpoints=dingtalk.endpoints,
        config=dingsync.StreamConfig(),
    )
    assert client.health()[0] is False
    with client:
        dingtalk.wait_until(lambda: client.health()[0], 5)
        mid = dingtalk.push_chatbot("x")
        dingtalk.wait_for_ack(mid)
        healthy, details = client.health()
        assert healthy and details["connected"] and details["state"] == "running"
        dingtalk.wait_until(lambda: client.stats.acks_sent == 1)  # counted just after sending
        stats = client.stats
        assert stats.connections_opened == 1
        assert stats.frames_received >= 1 and stats.last_frame_at is not None
        with pytest.raises(dataclass_error()):
            stats.acks_sent = 3  # type: ignore[misc]
    assert client.stats.connected is False
    with pytest.raises(StreamError):
        client.start()
    with pytest.raises(StreamError):
        client.run_forever()


def dataclass_error() -> type:
    import attrs

    return attrs.exceptions.FrozenInstanceError


def _role(thread_name: str) -> str:
    return thread_name.rstrip("0123456789")


def thread_roles(threads: Iterable[threading.Thread]) -> Set[str]:
    """The client threads' names without their numbers (the emulator's threads left out)."""
    roles = {_role(t.name) for t in threads}
    return {r for r in roles if r.startswith("dingsync-") and "fake" not in r}


def test_handler_threads_are_named_and_bounded(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """Handlers never run on the reader: only on at most `concurrency` threads named
    dingsync-handler-N. The client's threads are the four roles of client.py's docstring."""
    route = dingsync.Router()
    names = Calls()
    route.chatbot(lambda msg, ctx: names.add(threading.current_thread().name))
    make_client(route, concurrency=3)
    dingtalk.wait_for_acks(dingtalk.push_many(30), timeout=10)
    distinct = set(names.items)
    assert 1 <= len(distinct) <= 3
    assert all(n.startswith("dingsync-handler-") and n.split("-")[-1].isdigit() for n in distinct)
    assert thread_roles(threading.enumerate()) == {
        "dingsync-reader",
        "dingsync-handler-",
        "dingsync-writer-",
        "dingsync-keepalive",
    }


def test_a_named_client_puts_its_name_in_every_thread_it_starts(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """With several clients in one process, a log line's thread tells which client wrote it:
    the reader, the handlers, each connection's writer, the keepalive and a retiring reader."""
    route = dingsync.Router()
    names = Calls()
    route.chatbot(lambda msg, ctx: names.add(threading.current_thread().name))
    client = make_client(route, name="sales")
    assert "name='sales'" in repr(client)
    before = set(threading.enumerate())
    dingtalk.wait_for_acks(dingtalk.push_many(5), timeout=10)
    old = dingtalk.connections[0]
    dingtalk.disconnect(close_after=5.0, connection=old)
    dingtalk.wait_until(lambda: len(dingtalk.connections) == 2, 5)
    dingtalk.wait_for_acks(dingtalk.push_many(5), timeout=10)
    assert thread_roles([*before, *threading.enumerate()]) == {
        "dingsync-sales-reader",
        "dingsync-sales-reader-retiring",
        "dingsync-sales-handler-",
        "dingsync-sales-writer-",
        "dingsync-sales-keepalive",
    }
    assert {_role(n) for n in names.items} == {"dingsync-sales-handler-"}


@pytest.mark.parametrize("name", ["", "two words", "-leading", "x" * 41, "sales/cn"])
def test_a_client_name_that_is_no_label_is_refused(name: str) -> None:
    with pytest.raises(dingsync.ConfigurationError, match="StreamClient name"):
        dingsync.StreamClient(
            dingsync.Credentials(client_id="id", client_secret="s"), dingsync.Router(), name=name
        )


def test_stop_called_from_a_handler_does_not_deadlock(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """A handler may stop its own client: its ack is still sent and the client stops."""
    route = dingsync.Router()
    holder: List[Any] = []

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> str:
        holder[0].stop(timeout=5)
        return "bye"

    holder.append(make_client(route))
    mid = dingtalk.push_chatbot("stop please")
    assert ack_data(dingtalk.wait_for_ack(mid)) == {"response": "bye"}
    dingtalk.wait_until(lambda: not holder[0].connected, 5)


def test_the_same_event_under_a_new_message_id_runs_once(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """Events are deduped on their eventId: a redelivery with a new messageId is answered
    from the dedupe store, not run again; another event is run."""
    route = dingsync.Router()
    calls = Calls()
    route.event("user_add_org")(lambda ev, ctx: calls.add(ev.event_id))
    make_client(route)
    first = dingtalk.push_event("user_add_org", {"userId": ["u1"]}, eventId="evt-1")
    assert dingtalk.wait_for_ack(first)["code"] == 200
    again = dingtalk.push_event("user_add_org", {"userId": ["u1"]}, eventId="evt-1")
    assert ack_data(dingtalk.wait_for_ack(again))["status"] == "SUCCESS"
    other = dingtalk.push_event("user_add_org", {"userId": ["u2"]}, eventId="evt-2")
    assert dingtalk.wait_for_ack(other)["code"] == 200
    assert calls.items == ["evt-1", "evt-2"]
