"""Conformance: the official dingtalk-stream SDK (0.24.3) runs unchanged against FakeDingTalk.

One SDK process serves the whole module (a subprocess, because the SDK's loop never returns and
can only be stopped by killing it). The tests run in file order; the disconnect test comes last
but one because it replaces the connection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dingsync.testing import FakeDingTalk, Subscription

pytestmark = pytest.mark.conformance

APP = Path(__file__).with_name("sdk_echo_app.py")
OPEN_PATH = "/v1.0/gateway/connections/open"


class Sdk:
    def __init__(self, fake: FakeDingTalk, log: Path) -> None:
        self.fake = fake
        self.log = log
        env = dict(os.environ)
        env.update(fake.env())
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        env["PYTHONUNBUFFERED"] = "1"
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(APP)], env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._out.close()


@pytest.fixture(scope="module")
def sdk(tmp_path_factory):
    fake = FakeDingTalk().start()
    runner = Sdk(fake, tmp_path_factory.mktemp("sdk") / "sdk.log")
    try:
        try:
            fake.wait_for_connections(1, timeout=20)
        except TimeoutError:
            pytest.fail(f"the official SDK never connected; its output:\n{runner.output()}")
        yield runner
    finally:
        runner.close()
        fake.stop()


def test_sdk_opens_a_ticket_and_connects(sdk):
    """The SDK's open request has its ua and subscriptions; it connects with the ticket."""
    fake = sdk.fake
    req = fake.open_requests[0]
    assert req.status == 200 and req.client_id == fake.client_id
    assert req.ua == "dingtalk-sdk-python/v0.24.3-union"
    assert set(req.subscriptions) == {
        Subscription("EVENT", "*"),
        Subscription("CALLBACK", "/v1.0/im/bot/messages/get"),
    }
    assert fake.connections[0].alive
    assert fake.violations == []


def test_chatbot_message_is_handled_acked_and_replied(sdk):
    """A pushed chatbot message reaches the SDK's ChatbotHandler, whose reply_text lands in
    fake.replies, and whose ack carries the right messageId."""
    fake = sdk.fake
    mid = fake.push_chatbot("hello")
    ack = fake.wait_for_ack(mid, timeout=10)
    assert ack["code"] == 200 and ack["headers"]["messageId"] == mid
    assert json.loads(ack["data"]) == {"response": "OK"}
    reply = fake.wait_for_reply(timeout=5, predicate=lambda r: r.message_id == mid)
    assert reply.text == "echo: hello"
    assert reply.body["at"] == {"atUserIds": ["user-1"]}
    assert fake.violations == [], sdk.output()


def test_event_is_acked(sdk):
    """An EVENT frame is acked by the SDK's EventHandler (it echoes the event data)."""
    fake = sdk.fake
    mid = fake.push_event("user_add_org", {"userId": ["u1"]})
    ack = fake.wait_for_ack(mid, timeout=10)
    assert ack["code"] == 200 and json.loads(ack["data"]) == {"userId": ["u1"]}
    assert fake.violations == []


def test_system_ping_is_echoed(sdk):
    """A SYSTEM ping is answered with the same opaque."""
    fake = sdk.fake
    mid = fake.ping()
    fake.wait_for_ack(mid, timeout=10)
    pong = next(p for p in fake.pongs if p.message_id == mid)
    assert pong.matched
    assert fake.violations == []


def test_disconnect_leads_to_a_new_ticket_and_connection(sdk):
    """After SYSTEM disconnect the SDK acks, closes, opens a new ticket and gets the next push."""
    fake = sdk.fake
    first = fake.connections[-1]
    opens = len([r for r in fake.open_requests if r.status == 200])
    dmid = fake.disconnect(close_after=10.0)
    fake.wait_for_ack(dmid, timeout=10)  # the Python SDK acks disconnect before closing
    assert first.wait_closed(5), "the SDK did not close the old connection"
    fake.wait_until(
        lambda: len([r for r in fake.open_requests if r.status == 200]) == opens + 1,
        10,
        "no second open request",
    )
    (second,) = fake.wait_for_connections(1, timeout=10)
    assert second is not first and fake.count("POST", OPEN_PATH) == opens + 1
    mid = fake.push_chatbot("after reconnect")
    ack = fake.wait_for_ack(mid, timeout=10)
    assert ack.connection_id == second.id
    fake.wait_for_reply(timeout=5, predicate=lambda r: r.message_id == mid)


def test_no_ack_violations_at_all(sdk):
    """Across the whole session the official SDK produced no ack the emulator finds malformed."""
    assert sdk.fake.violations == []
    assert sdk.proc.poll() is None, sdk.output()
