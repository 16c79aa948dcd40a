"""Handlers on the reader: quick ones run there, a blocking one never stops the reading.

While no handler thread is busy the reader runs a handler itself; when that handler blocks, the
stand-in reads in its place (dingsync/stream/standby.py).
"""

from __future__ import annotations

import threading
import time
from typing import List

import dingsync
from dingsync.stream.connection import GATEWAY_OPEN_PATH
from dingsync.testing import FakeDingTalk

from .conftest import MakeClient

WAIT = 10.0


def blocking_route(release: threading.Event, names: List[str]) -> dingsync.Router:
    """Messages whose text starts with "block" wait for ``release``; the rest return at once.
    Each handler records the name of the thread it ran on."""
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> str:
        names.append(f"{msg.text}@{threading.current_thread().name}")
        if msg.text.startswith("block"):
            assert release.wait(WAIT)
        return msg.text

    return route


def hold_the_reader(dingtalk: FakeDingTalk, client: dingsync.StreamClient, names: List[str]) -> str:
    """Push a message whose handler blocks (see blocking_route), wait until it runs on the
    reader and the stand-in reads in the reader's place; returns its message id."""
    mid = dingtalk.push_chatbot("block me")
    dingtalk.wait_until(lambda: len(names) == 1, WAIT)
    # White box: no public signal says the stand-in is reading.
    deadline = time.monotonic() + WAIT
    while not client._standby.rescuing:
        assert time.monotonic() < deadline, "the stand-in never started reading"
        time.sleep(0.001)
    return mid


def test_quick_handlers_run_on_the_reader(dingtalk: FakeDingTalk, make_client: MakeClient) -> None:
    """A burst of quick messages is handled on the reader itself, one after another."""
    names: List[str] = []
    make_client(blocking_route(threading.Event(), names), concurrency=4)
    dingtalk.wait_for_acks(dingtalk.push_many(200), timeout=WAIT)
    assert len(names) == 200
    assert {n.split("@")[1] for n in names} == {"dingsync-reader"}
    assert dingtalk.violations == []


def test_a_blocked_handler_on_the_reader_does_not_stop_reading(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """While a handler blocks the reader, the stand-in reads: later messages are handled on
    the handler threads and acked, and a ping is answered; the blocked one is acked when it
    returns."""
    release = threading.Event()
    names: List[str] = []
    client = make_client(blocking_route(release, names), concurrency=4)
    try:
        blocked = dingtalk.push_chatbot("block me")
        dingtalk.wait_until(lambda: len(names) == 1, WAIT)
        assert names == ["block me@dingsync-reader"]
        quick = [dingtalk.push_chatbot(f"quick {i}") for i in range(5)]
        ping = dingtalk.ping()
        dingtalk.wait_for_acks(quick + [ping], timeout=WAIT)
        assert dingtalk.pongs[-1].matched
        assert all(n.split("@")[1].startswith("dingsync-handler-") for n in names[1:])
        assert client.stats.in_flight == 1
        assert not any(a["headers"]["messageId"] == blocked for a in dingtalk.acks)
    finally:
        release.set()
    dingtalk.wait_for_ack(blocked, timeout=WAIT)
    after = dingtalk.push_chatbot("after")
    dingtalk.wait_for_ack(after, timeout=WAIT)
    assert dingtalk.violations == []


def test_concurrency_bounds_the_reader_and_the_threads_together(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """concurrency=3: the reader's blocked handler plus two handler threads, never a fourth
    handler at once."""
    release = threading.Event()
    names: List[str] = []
    make_client(blocking_route(release, names), concurrency=3)
    try:
        mids = [dingtalk.push_chatbot(f"block {i}") for i in range(6)]
        dingtalk.wait_until(lambda: len(names) == 3, WAIT)
        threading.Event().wait(0.2)  # a fourth handler would start now if it could
        assert len(names) == 3
    finally:
        release.set()
    dingtalk.wait_for_acks(mids, timeout=WAIT)


def test_concurrency_one_keeps_every_handler_on_the_handler_thread(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """concurrency=1 means one handler at a time, in order, on dingsync-handler-1."""
    names: List[str] = []
    make_client(blocking_route(threading.Event(), names), concurrency=1)
    mids = [dingtalk.push_chatbot(f"m{i}") for i in range(20)]
    dingtalk.wait_for_acks(mids, timeout=WAIT)
    assert [n.split("@")[0] for n in names] == [f"m{i}" for i in range(20)]
    assert {n.split("@")[1] for n in names} == {"dingsync-handler-1"}


def test_a_disconnect_read_by_the_stand_in_moves_the_reader_to_the_new_connection(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """SYSTEM disconnect arrives while the reader's handler blocks: the stand-in opens the
    replacement, and once the handler returns the reader reads the new connection."""
    release = threading.Event()
    names: List[str] = []
    client = make_client(blocking_route(release, names), concurrency=4)
    blocked = dingtalk.push_chatbot("block me")
    dingtalk.wait_until(lambda: len(names) == 1, WAIT)
    dingtalk.disconnect(close_after=5.0)
    dingtalk.wait_until(lambda: len(dingtalk.connections) == 2, WAIT)
    release.set()
    dingtalk.wait_for_ack(blocked, timeout=WAIT)
    new = dingtalk.connections[1]
    mids = dingtalk.push_many(20, connection=new)
    dingtalk.wait_for_acks(mids, timeout=WAIT)
    assert client.stats.reconnects == 0  # planned: make-before-break, not a reconnect
    assert dingtalk.violations == []


def test_a_drop_met_by_the_stand_in_is_reconnected_without_waiting_for_the_handler(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """The connection drops while a handler holds the reader: the stand-in connects again at
    once and messages keep being handled; the reader takes the new connection over when its
    handler returns."""
    release = threading.Event()
    names: List[str] = []
    client = make_client(blocking_route(release, names), concurrency=4)
    try:
        hold_the_reader(dingtalk, client, names)
        dingtalk.drop()
        dingtalk.wait_until(lambda: len(dingtalk.connections) == 2, WAIT)
        during = dingtalk.push_chatbot("while the handler blocks")
        dingtalk.wait_for_ack(during, timeout=WAIT)
        assert not release.is_set()
    finally:
        release.set()
    after = dingtalk.push_chatbot("after the handler")
    dingtalk.wait_for_ack(after, timeout=WAIT)
    assert client.stats.reconnects == 1 and len(dingtalk.connections) == 2


def test_the_ack_of_a_handler_that_blocked_the_reader_is_not_held_back(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """The reader's acks normally wait for its next read; after a blocking handler, while the
    stand-in reads, the ack goes out at once, not after the stand-in's read times out (5 s)."""
    release = threading.Event()
    names: List[str] = []
    client = make_client(
        blocking_route(release, names), concurrency=4, recv_timeout=5.0, dead_after=20.0
    )
    blocked = hold_the_reader(dingtalk, client, names)
    release.set()
    started = time.monotonic()
    dingtalk.wait_for_ack(blocked, timeout=WAIT)
    assert time.monotonic() - started < 2.5  # half the read timeout that would release it


def test_the_stand_in_retries_a_failing_gateway_while_the_handler_blocks(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """After the drop the gateway refuses three times: the stand-in waits and tries again, as
    the reconnect policy says, and gets through before the handler returns."""
    release = threading.Event()
    names: List[str] = []
    client = make_client(blocking_route(release, names), concurrency=4)
    try:
        hold_the_reader(dingtalk, client, names)
        dingtalk.fail_next("POST", GATEWAY_OPEN_PATH, status=503, times=3)
        dingtalk.drop()
        dingtalk.wait_until(lambda: len(dingtalk.connections) == 2, WAIT)
        assert (
            dingtalk.count("POST", GATEWAY_OPEN_PATH) == 5
        )  # the first, three refused, the new one
        during = dingtalk.push_chatbot("while the handler blocks")
        dingtalk.wait_for_ack(during, timeout=WAIT)
    finally:
        release.set()


def test_the_stand_in_reads_the_replacement_while_the_handler_still_blocks(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """SYSTEM disconnect while the reader's handler blocks, and the old connection closes
    before that handler returns: the stand-in goes on reading the replacement (messages pushed
    to it are handled meanwhile), opens nothing more, and the reader adopts it. No connection is
    left open that nobody reads."""
    release = threading.Event()
    names: List[str] = []
    client = make_client(blocking_route(release, names), concurrency=4)
    try:
        blocked = hold_the_reader(dingtalk, client, names)
        old = dingtalk.connections[0]
        dingtalk.disconnect(close_after=0.2)
        dingtalk.wait_until(lambda: len(dingtalk.connections) == 2 and not old.alive, WAIT)
        new = dingtalk.connections[1]
        during = dingtalk.push_many(5, connection=new)
        dingtalk.wait_for_acks(during, timeout=WAIT)
        threading.Event().wait(0.2)  # a second rescue of the old connection would start now
        assert not release.is_set()
    finally:
        release.set()
    dingtalk.wait_for_ack(blocked, timeout=WAIT)
    after = dingtalk.push_many(5, connection=new)
    dingtalk.wait_for_acks(after, timeout=WAIT)
    assert [c.alive for c in dingtalk.connections] == [False, True]
    assert client.stats.reconnects == 0
    assert dingtalk.violations == []


def test_a_stop_that_times_out_under_a_handler_on_the_reader_leaves_no_connection_open(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """stop(timeout) while the reader's handler is stuck: after the timeout the connection is
    cut, so no push goes to a connection nobody reads; the stuck message is not acked (the
    gateway delivers it again)."""
    release = threading.Event()
    names: List[str] = []
    client = make_client(blocking_route(release, names), concurrency=4)
    try:
        blocked = dingtalk.push_chatbot("block me")
        dingtalk.wait_until(lambda: len(names) == 1, WAIT)
        started = time.monotonic()
        client.stop(timeout=0.3)
        assert time.monotonic() - started < 2.0
        # At once, not when the watchdog would notice the silence (dead_after=5).
        dingtalk.wait_until(lambda: not dingtalk.live_connections, 2.0)
    finally:
        release.set()
    dingtalk.wait_until(lambda: client.health()[1]["state"] == "stopped", WAIT)
    assert not any(a["headers"]["messageId"] == blocked for a in dingtalk.acks)


def test_a_zombie_connection_is_replaced_while_a_handler_holds_the_reader(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """The connection stalls (no frames, no pongs) while the reader's handler blocks: the
    watchdog cuts it, the stand-in connects again, and messages are handled before the handler
    returns; the reader then carries on with the new connection."""
    release = threading.Event()
    names: List[str] = []
    client = make_client(blocking_route(release, names), concurrency=4, dead_after=1.0)
    try:
        blocked = dingtalk.push_chatbot("block me")
        dingtalk.wait_until(lambda: len(names) == 1, WAIT)
        dingtalk.stall()
        dingtalk.wait_until(lambda: len(dingtalk.connections) == 2, WAIT)
        during = dingtalk.push_chatbot("while the handler blocks")
        dingtalk.wait_for_ack(during, timeout=WAIT)
        assert not release.is_set()
    finally:
        release.set()
    dingtalk.wait_for_ack(blocked, timeout=WAIT)  # on the new connection: the old one is cut
    after = dingtalk.push_chatbot("after the handler")
    dingtalk.wait_for_ack(after, timeout=WAIT)
    dingtalk.resume()  # the stalled side reads again, and finds the connection closed
    dingtalk.wait_until(lambda: [c.alive for c in dingtalk.connections] == [False, True], WAIT)
    assert client.stats.reconnects == 1


def test_held_acks_go_out_while_the_frames_behind_them_wait_for_a_handler_thread(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """The reader holds the ack of a quick message for its next socket read. When the frames
    read with it then wait for a handler thread (every slot taken by blocked handlers), that
    ack goes out at once, not when a handler returns."""
    release = threading.Event()
    names: List[str] = []
    # concurrency 2, max_pending 0: the reader plus one handler thread, no queue.
    make_client(blocking_route(release, names), concurrency=2, max_pending=0)
    try:
        frames = dingtalk.prepare_chatbot(1, text="quick")
        frames += dingtalk.prepare_chatbot(3, text="block {i}")
        quick, *blocked = dingtalk.push_many(frames)  # written in one go: read in one go
        dingtalk.wait_until(lambda: len(names) == 3, WAIT)  # quick, then two blocked handlers
        # Well before the blocked handlers give up waiting (WAIT), which would flush it too.
        dingtalk.wait_for_ack(quick, timeout=2.0)
    finally:
        release.set()
    dingtalk.wait_for_acks(blocked, timeout=WAIT)
