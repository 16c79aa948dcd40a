"""StreamClient under network faults: disconnect, drop, stall, bad credentials, giving up."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, List

import pytest

import dingsync
from dingsync.errors import AuthError, GatewayOpenError, ReconnectGaveUp
from dingsync.stream.gateway import GATEWAY_OPEN_PATH
from dingsync.testing import FakeDingTalk

from .conftest import MakeClient
from .test_stream_client import Calls


class FakeTime:
    """A monotonic clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: List[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def counting_router(calls: Calls) -> dingsync.Router:
    route = dingsync.Router()
    route.chatbot(lambda msg, ctx: calls.add(msg.text))
    return route


def test_disconnect_opens_the_new_connection_first_and_loses_nothing(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """On SYSTEM disconnect the replacement opens before the old socket closes; messages pushed
    steadily through the switch are all handled once and acked."""
    calls = Calls()
    client = make_client(counting_router(calls))
    old = dingtalk.wait_for_connections(1)[0]
    pushed: List[str] = []
    stop = threading.Event()

    def pusher() -> None:
        i = 0
        while not stop.is_set():
            pushed.append(dingtalk.push_chatbot(f"m{i}"))
            i += 1
            time.sleep(0.005)

    thread = threading.Thread(target=pusher)
    thread.start()
    try:
        time.sleep(0.2)
        dingtalk.disconnect(close_after=0.5, connection=old)
        assert old.wait_closed(5)
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    dingtalk.wait_for_acks(pushed, timeout=10)
    assert len(dingtalk.connections) == 2
    new = dingtalk.connections[1]
    assert old.closed_at is not None and new.opened_at < old.closed_at
    assert sorted(calls.items, key=lambda t: int(t[1:])) == [f"m{i}" for i in range(len(pushed))]
    assert client.stats.reconnects == 0  # a planned switch is not a fault
    assert client.connected and dingtalk.violations == []


def test_a_failed_replacement_keeps_the_old_connection_until_it_closes(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """If the replacement cannot be opened, the client stays on the draining connection and
    reconnects the ordinary way once the gateway closes it; nothing is lost."""
    calls = Calls()
    make_client(counting_router(calls))
    old = dingtalk.wait_for_connections(1)[0]
    dingtalk.fail_next("POST", GATEWAY_OPEN_PATH, status=503)
    dingtalk.disconnect(close_after=0.3, connection=old)
    pushed = [dingtalk.push_chatbot(f"m{i}") for i in range(5)]
    assert old.wait_closed(5)
    dingtalk.wait_for_acks(pushed, timeout=5)
    assert dingtalk.count("POST", GATEWAY_OPEN_PATH) == 3
    assert sorted(calls.items) == [f"m{i}" for i in range(5)]


def test_drop_reconnects_with_backoff(dingtalk: FakeDingTalk, make_client: MakeClient) -> None:
    """An abrupt drop is noticed at once and a new connection (new ticket) is opened."""
    calls = Calls()
    client = make_client(counting_router(calls))
    dingtalk.wait_for_connections(1)
    dingtalk.wait_for_ack(dingtalk.push_chatbot("before"))
    dingtalk.drop()
    dingtalk.wait_until(lambda: len(dingtalk.connections) == 2, 5)
    dingtalk.wait_for_connections(1)
    assert dingtalk.wait_for_ack(dingtalk.push_chatbot("after"))["code"] == 200
    assert calls.items == ["before", "after"]
    assert len(dingtalk.open_requests) == 2  # a fresh ticket per connection
    assert client.stats.reconnects == 1


def test_repeated_gateway_failures_back_off_exponentially(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """Consecutive failures wait initial, 2x, 4x ... capped at max."""
    waits: List[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(0.01)

    dingtalk.fail_next("POST", GATEWAY_OPEN_PATH, status=503, times=4)
    policy = dingsync.ReconnectPolicy(initial=0.1, max=0.4, jitter=0.0)
    make_client(counting_router(Calls()), reconnect=policy, sleep=sleep)
    dingtalk.wait_for_connections(1)
    assert waits == [0.1, 0.2, 0.4, 0.4]


def test_stalled_connection_is_replaced_by_the_watchdog(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """A zombie (open socket, no frames, no pongs) is replaced within dead_after plus one
    ping interval."""
    calls = Calls()
    client = make_client(counting_router(calls), dead_after=1.0)
    ping_interval = client.config.ping_interval
    dingtalk.wait_for_connections(1)
    dingtalk.wait_until(lambda: client.health()[0], 5)
    t0 = time.monotonic()
    dingtalk.stall()
    dingtalk.wait_until(lambda: len(dingtalk.connections) == 2, 5)
    elapsed = time.monotonic() - t0
    assert elapsed <= 1.0 + ping_interval + 0.3, elapsed
    mid = dingtalk.push_chatbot("on the new connection")
    assert dingtalk.wait_for_ack(mid)["code"] == 200
    assert calls.items == ["on the new connection"]


def test_credentials_refused_on_the_first_attempt_raise_auth_error(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """A plain script with a wrong secret hears it without logging set up: run_forever() and
    start() raise AuthError at the first refusal, naming both causes users hit."""
    bad = dingsync.Credentials(client_id=dingtalk.client_id, client_secret="wrong-secret")
    client = make_client(counting_router(Calls()), start=False, credentials=bad)
    with pytest.raises(AuthError) as info:
        client.run_forever()
    message = str(info.value)
    assert "DINGTALK_CLIENT_SECRET" in message and "IP allow-list" in message
    assert "wrong-secret" not in message
    assert dingtalk.count("POST", GATEWAY_OPEN_PATH) == 1
    with pytest.raises(AuthError):
        make_client(counting_router(Calls()), credentials=bad)  # start()
    assert dingtalk.count("POST", GATEWAY_OPEN_PATH) == 2


def lose_credentials_after_connecting(
    dingtalk: FakeDingTalk, client: dingsync.StreamClient
) -> threading.Thread:
    """Run ``client`` until it is connected, then rotate the app's secret and drop the
    connection: every reconnect is refused from then on."""
    reader = threading.Thread(target=lambda: _run_quietly(client), daemon=True)
    reader.start()
    dingtalk.wait_until(lambda: client.connected, 5)
    dingtalk.client_secret = "rotated"
    dingtalk.drop()
    return reader


def _run_quietly(client: dingsync.StreamClient) -> None:
    try:
        client.run_forever()
    except BaseException as exc:
        client.error = exc


def test_credentials_refused_later_are_reported_and_not_hammered(
    dingtalk: FakeDingTalk, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """401 from the gateway after the app was running (a rotated secret): a clear AuthError,
    logged once per attempt, and at most a handful of gateway calls in a (simulated) minute."""
    fake_time = FakeTime()
    client: Any = None

    def sleep(seconds: float) -> None:
        fake_time.sleep(seconds)
        if fake_time.now - 1000.0 >= 60.0:
            client.stop(drain=False)

    policy = dingsync.ReconnectPolicy(initial=1.0, max=60.0, jitter=0.0, auth_wait=30.0)
    client = make_client(
        counting_router(Calls()), start=False, reconnect=policy, clock=fake_time.clock, sleep=sleep
    )
    with caplog.at_level(logging.ERROR, logger="dingsync"):
        lose_credentials_after_connecting(dingtalk, client).join(10)
    assert client.error is None  # stopped, not crashed
    refused = dingtalk.count("POST", GATEWAY_OPEN_PATH) - 1
    assert 1 <= refused <= 3
    assert fake_time.sleeps[0] == 1.0  # the drop itself: an ordinary backoff
    assert all(s >= 30.0 for s in fake_time.sleeps[1:])
    assert isinstance(client.last_error, AuthError)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    refusals = [m for m in errors if "refused client id" in m]
    assert len(refusals) == len(fake_time.sleeps) - 1
    assert "DINGTALK_CLIENT_SECRET" in refusals[0] and "rotated" not in " ".join(errors)


def test_give_up_after_raises_reconnect_gave_up(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """ReconnectPolicy(give_up_after=...) ends run_forever with ReconnectGaveUp, whose cause is
    the last error (here the AuthError); the last wait is cut to the deadline."""
    fake_time = FakeTime()
    policy = dingsync.ReconnectPolicy(initial=1.0, jitter=0.0, auth_wait=10.0, give_up_after=35.0)
    client = make_client(
        counting_router(Calls()),
        start=False,
        reconnect=policy,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )
    lose_credentials_after_connecting(dingtalk, client).join(10)
    assert isinstance(client.error, ReconnectGaveUp)
    assert isinstance(client.error.__cause__, AuthError)
    # The dropped session is the first failed attempt, then five refusals.
    assert client.error.attempts == dingtalk.count("POST", GATEWAY_OPEN_PATH) == 6
    assert fake_time.sleeps == [1.0, 10.0, 10.0, 10.0, 4.0]


def test_max_attempts_gives_up_in_the_background_thread(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """With start(), a give-up ends the reader thread and is kept in client.error."""
    dingtalk.fail_next("POST", GATEWAY_OPEN_PATH, status=503, times=10)
    policy = dingsync.ReconnectPolicy(initial=0.01, jitter=0.0, max_attempts=3)
    client = make_client(counting_router(Calls()), reconnect=policy)
    dingtalk.wait_until(lambda: client.error is not None, 5)
    assert isinstance(client.error, ReconnectGaveUp)
    assert isinstance(client.error.__cause__, GatewayOpenError)
    assert client.error.__cause__.status == 503
    assert dingtalk.count("POST", GATEWAY_OPEN_PATH) == 3


def test_stop_interrupts_the_backoff_wait(dingtalk: FakeDingTalk, make_client: MakeClient) -> None:
    """A long backoff wait ends as soon as stop() is called."""
    dingtalk.fail_next("POST", GATEWAY_OPEN_PATH, status=503, times=5)
    policy = dingsync.ReconnectPolicy(initial=30.0, jitter=0.0)
    client = make_client(counting_router(Calls()), reconnect=policy)
    dingtalk.wait_until(lambda: dingtalk.count("POST", GATEWAY_OPEN_PATH) == 1, 5)
    t0 = time.monotonic()
    client.stop(timeout=5)
    assert time.monotonic() - t0 < 1.0


def test_redis_dedupe_shared_by_two_clients_handles_once(
    dingtalk: FakeDingTalk, make_client: MakeClient, redis_client: Any
) -> None:
    """Two replicas sharing a RedisDedupeStore: a message delivered to both runs once; the
    late duplicate gets the cached ack; a duplicate that arrives mid-handler is not run."""
    calls = Calls()
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> str:
        calls.add(msg.text)
        if msg.text == "slow":
            time.sleep(0.5)
        return f"handled {msg.text}"

    store = dingsync.RedisDedupeStore(redis_client, ttl=60, prefix="test:")
    make_client(route, dedupe=store)
    make_client(route, dedupe=dingsync.RedisDedupeStore(redis_client, ttl=60, prefix="test:"))
    a, b = dingtalk.wait_for_connections(2)

    mid = dingtalk.push_chatbot("fast", connection=a)
    dingtalk.wait_for_ack(mid)
    push = next(p for p in dingtalk.pushes if p.message_id == mid)
    dingtalk.push_frame(push.frame, connection=b)
    dingtalk.wait_until(
        lambda: len([x for x in dingtalk.acks if x["headers"]["messageId"] == mid]) == 2, 5
    )
    acks = [x for x in dingtalk.acks if x["headers"]["messageId"] == mid]
    assert {x.connection_id for x in acks} == {a.id, b.id}
    assert {x["data"] for x in acks} == {'{"response":"handled fast"}'}

    slow = dingtalk.push_chatbot("slow", connection=a)
    dingtalk.wait_until(lambda: "slow" in calls.items, 5)
    slow_push = next(p for p in dingtalk.pushes if p.message_id == slow)
    dingtalk.push_frame(slow_push.frame, connection=b)
    assert dingtalk.wait_for_ack(slow)["data"] == '{"response":"handled slow"}'
    time.sleep(0.2)
    assert calls.items == ["fast", "slow"]
