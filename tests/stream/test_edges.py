"""The receive core at its edges (issue: "one job per thread"): a handler that raises
SystemExit, a drain longer than dead_after, a peer that stops reading acks, replies from every
handler thread at once, a busy dedupe window, Ctrl-C, a stop that must be a bound, and a
handler thread the OS refuses."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from typing import Any, List

import pytest
import websocket

import dingsync
from dingsync import messages as m
from dingsync.dedupe import MemoryDedupeStore
from dingsync.frames import Ack
from dingsync.testing import FakeDingTalk

from .conftest import MakeClient
from .test_stream_client import Calls, acks_for


@pytest.mark.parametrize("raised", [SystemExit(0), KeyboardInterrupt()])
def test_a_handler_raising_a_base_exception_costs_one_message_only(
    dingtalk: FakeDingTalk, make_client: MakeClient, raised: BaseException
) -> None:
    """SystemExit (argparse on --help) or KeyboardInterrupt raised in a handler is answered
    500, the client keeps receiving, and the dedupe claim is released: the redelivery runs."""
    route = dingsync.Router()
    calls = Calls()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> str:
        calls.add(msg.text)
        if msg.text == "exit" and calls.items.count("exit") == 1:
            raise raised
        return "ok"

    client = make_client(route)
    failed = dingtalk.push_chatbot("exit", msg_id="msg-exit")
    assert dingtalk.wait_for_ack(failed)["code"] == 500
    assert dingtalk.wait_for_ack(dingtalk.push_chatbot("next"))["code"] == 200
    again = dingtalk.push_chatbot("exit", msg_id="msg-exit")  # DingTalk's redelivery
    assert dingtalk.wait_for_ack(again)["code"] == 200
    assert calls.items == ["exit", "next", "exit"]
    assert client.error is None and client.connected
    assert client.stats.handler_errors == 1


def test_a_drain_longer_than_dead_after_keeps_the_connection_and_sends_the_ack(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """While stop() drains a handler that runs past dead_after, the connection is still read
    and pinged: the watchdog does not cut it, and the handler's ack is written."""
    release = threading.Event()
    started = threading.Event()
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> str:
        started.set()
        release.wait(10)
        return "late but handled"

    client = make_client(route, dead_after=0.5)
    mid = dingtalk.push_chatbot("slow")
    assert started.wait(5)
    stopper = threading.Thread(target=client.stop, kwargs={"timeout": 10})
    stopper.start()
    time.sleep(1.5)  # three times dead_after, inside the drain
    assert client.connected, "the watchdog cut the connection during the drain"
    release.set()
    stopper.join(10)
    assert dingtalk.wait_for_ack(mid)["data"] == '{"response":"late but handled"}'
    assert client.stats.reconnects == 0 and client.stats.acks_lost == 0


def small_send_buffer(url: str, **options: Any) -> Any:
    """A connector whose socket buffers little, so a peer that stops reading blocks writes."""
    return websocket.create_connection(
        url, sockopt=((socket.SOL_SOCKET, socket.SO_SNDBUF, 4096),), **options
    )


def test_a_peer_that_stops_reading_acks_is_replaced_and_nothing_is_acked_twice(
    dingtalk: FakeDingTalk, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway stops taking bytes while large acks are written: the write deadline
    (dead_after) ends that connection, the acks it could not take are counted and logged
    lost, a new connection opens, the redeliveries are answered from the dedupe store, no
    ack is written twice, and stop() still finishes."""
    release = threading.Event()
    route = dingsync.Router()
    calls = Calls()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> str:
        calls.add(msg.text)
        release.wait(10)
        return "x" * 200_000  # large acks: the socket buffers fill at once

    client = make_client(route, dead_after=1.0, concurrency=8, connector=small_send_buffer)
    mids = [dingtalk.push_chatbot(f"m{i}") for i in range(8)]
    dingtalk.wait_until(lambda: len(calls) == 8, 5)
    first = dingtalk.stall()  # the gateway stops reading (and answering pings)
    with caplog.at_level(logging.WARNING, logger="dingsync"):
        release.set()
        dingtalk.wait_until(lambda: client.stats.connections_opened == 2, 10)
    assert client.stats.acks_lost >= 1
    assert any("unwritten" in r.getMessage() for r in caplog.records)
    dingtalk.resume(first)
    dingtalk.drop(first)
    for push in [p for p in dingtalk.pushes if p.message_id in mids]:
        dingtalk.push_frame(push.frame)  # DingTalk delivers the unacked ones again
    dingtalk.wait_until(lambda: all(acks_for(dingtalk, m) for m in mids), 10)
    assert all(len(acks_for(dingtalk, m)) == 1 for m in mids)
    assert sorted(calls.items) == sorted(f"m{i}" for i in range(8))  # each handled once
    client.stop(timeout=3)
    assert client.health()[1]["state"] == "stopped"


def test_replies_from_every_handler_thread_share_one_pool(
    dingtalk: FakeDingTalk, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """16 handlers replying at once reuse pooled connections: urllib3 never discards one
    ("Connection pool is full"), as it did with its default pool of 10."""
    barrier = threading.Barrier(16, timeout=10)
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        barrier.wait()
        ctx.reply_text(f"re: {msg.text}")  # through the session webhook
        ctx.api.robot.send_to_users(["user-1"], m.Text(f"and: {msg.text}"))  # the OpenAPI

    make_client(route, concurrency=16)
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        for _ in range(2):
            dingtalk.wait_for_acks(dingtalk.push_many(16), timeout=15)
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert len(dingtalk.replies) == 32 and len(dingtalk.sent) == 32


def test_the_memory_dedupe_store_keeps_its_ttl_at_any_rate_within_its_bound() -> None:
    """At 500 messages/s a redelivery 60 s later is still recognised (10,000 entries held
    only 20 s of them); expired entries leave on their own, and the bound is configurable."""
    now = [0.0]
    store = MemoryDedupeStore(ttl=600, clock=lambda: now[0])
    ack = Ack.ok("m", None)
    for i in range(30_000):  # 60 s at 500/s
        now[0] = i / 500
        store.claim(f"msg-{i}")
        store.complete(f"msg-{i}", ack)
    assert store.claim("msg-0").state == "done"
    now[0] = 700.0  # all expired: the next insert sweeps them away
    store.claim("fresh")
    assert len(store) == 1
    config = dingsync.StreamConfig(dedupe_max_entries=50_000)
    client = dingsync.StreamClient(
        dingsync.Credentials(client_id="id", client_secret="secret"),
        dingsync.Router(),
        config=config,
    )
    assert isinstance(client.dedupe, MemoryDedupeStore) and client.dedupe.max_entries == 50_000


def test_a_full_memory_dedupe_store_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """Beyond its bound the store forgets early, says so, and how to fix it."""
    store = MemoryDedupeStore(ttl=600, max_entries=100, clock=lambda: 1.0)
    with caplog.at_level(logging.WARNING, logger="dingsync"):
        for i in range(300):
            store.claim(f"msg-{i}")
    assert len(store) == 100
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "dedupe_max_entries" in warnings[0]


def test_ctrl_c_in_run_forever_drains_and_leaves_later_frames_unacked(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """Ctrl-C (SIGINT on the main thread, the reader): the running handler finishes and is
    acked, a frame pushed during the drain is neither run nor acked (DingTalk redelivers it),
    and run_forever raises KeyboardInterrupt at the end."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")
    started, release = threading.Event(), threading.Event()
    route = dingsync.Router()
    calls = Calls()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        calls.add(msg.text)
        started.set()
        release.wait(10)

    client = make_client(route, start=False)
    main = threading.get_ident()
    late: List[str] = []

    def interrupt() -> None:
        first = dingtalk.push_chatbot("running")
        assert started.wait(5)
        signal.pthread_kill(main, signal.SIGINT)
        dingtalk.wait_until(lambda: client._stopping.is_set(), 5)
        late.append(dingtalk.push_chatbot("during the drain"))
        time.sleep(0.2)
        release.set()
        late.append(first)

    helper = threading.Thread(target=interrupt)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        client.run_forever()
    helper.join(5)
    during, first = late
    assert dingtalk.wait_for_ack(first)["code"] == 200
    assert acks_for(dingtalk, during) == [] and calls.items == ["running"]


def test_stop_is_a_bound_even_when_a_handler_never_returns(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """stop(timeout) returns within its timeout with the client stopped and the connection
    closed, however long a handler blocks."""
    never = threading.Event()
    route = dingsync.Router()
    route.chatbot(lambda msg, ctx: never.wait(30))
    client = make_client(route)
    dingtalk.push_chatbot("stuck")
    dingtalk.wait_until(lambda: client.stats.in_flight == 1, 5)
    started = time.monotonic()
    client.stop(timeout=1.0)
    assert time.monotonic() - started < 2.0
    assert client.health()[1]["state"] == "stopped"
    dingtalk.wait_until(lambda: not dingtalk.live_connections, 5)
    never.set()


def test_a_handler_thread_the_os_refuses_is_logged_and_tried_again(
    dingtalk: FakeDingTalk,
    make_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No handler thread can start at first (not with the client, not on the first retry):
    each refusal is logged, the message waits in the queue, and it is handled (once) as soon
    as the keepalive gets a thread started."""
    route = dingsync.Router()
    calls = Calls()
    route.chatbot(lambda msg, ctx: calls.add(msg.text))
    real_start = threading.Thread.start
    refusals = [1] * 2  # the first thread at the start, then the keepalive's first try
    refused_all = threading.Event()

    def start(thread: threading.Thread) -> None:
        if thread.name.startswith("dingsync-handler") and refusals:
            refusals.pop()
            if not refusals:
                refused_all.set()
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    with caplog.at_level(logging.ERROR, logger="dingsync"):
        client = make_client(route, concurrency=2)
        waited = dingtalk.push_chatbot("waited")
        assert refused_all.wait(5)
        assert dingtalk.wait_for_ack(waited)["code"] == 200
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "cannot start handler thread" in m]) == 2
    assert calls.items == ["waited"] and client.connected


def test_threads_beyond_the_first_two_start_only_when_handlers_stall(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """Quick handlers stay on the first two threads, however many messages come; handlers
    that block get up to `concurrency` threads, started by the keepalive."""
    route = dingsync.Router()
    names = Calls()
    release, blocking = threading.Event(), threading.Semaphore(0)

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        names.add(threading.current_thread().name)
        if msg.text.startswith("block"):
            blocking.release()
            release.wait(10)

    make_client(route, concurrency=6)
    dingtalk.wait_for_acks(dingtalk.push_many(300), timeout=10)
    assert len(set(names.items)) <= 2
    blocked = [dingtalk.push_chatbot(f"block {i}") for i in range(6)]
    for _ in blocked:  # all six run at once: the pool grew to six threads
        assert blocking.acquire(timeout=5)
    release.set()
    dingtalk.wait_for_acks(blocked, timeout=10)
    assert len(set(names.items)) == 6


def test_a_stop_while_connecting_leaves_no_connection_open(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """stop() lands while the websocket handshake is in progress: the connection that opens
    afterwards is closed at once, and run_forever returns."""
    entered, release = threading.Event(), threading.Event()

    def slow_connector(url: str, **options: Any) -> Any:
        entered.set()
        release.wait(10)
        return websocket.create_connection(url, **options)

    client = make_client(dingsync.Router(), start=False, connector=slow_connector)
    reader = threading.Thread(target=client.run_forever)
    reader.start()
    assert entered.wait(5)
    stopper = threading.Thread(target=client.stop, kwargs={"timeout": 5})
    stopper.start()
    dingtalk.wait_until(lambda: client._stopping.is_set(), 5)
    release.set()
    reader.join(5)
    stopper.join(5)
    assert not reader.is_alive()
    dingtalk.wait_until(lambda: not dingtalk.live_connections, 5)
