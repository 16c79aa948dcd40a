"""The HTTP-callback examples against the emulator, each served by waitress on loopback:
serverless_fc (Function Compute's WSGI entry point) and flask_app (callbacks under /dingtalk)."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_examples_receive import load

import dingsync
from dingsync.testing import FakeDingTalk
from dingworker.http import HttpServer

serverless_fc = load("serverless_fc")
flask_app = load("flask_app")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def env(fake: FakeDingTalk, monkeypatch: pytest.MonkeyPatch) -> dict:
    values = dict(fake.env())
    values["DINGTALK_EVENT_TOKEN"] = fake.event_token
    values["DINGTALK_EVENT_AES_KEY"] = fake.event_aes_key
    values["DINGTALK_CARD_CALLBACK_SECRET"] = "card-secret-for-the-example"
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.mark.parametrize("module", [serverless_fc, flask_app], ids=lambda m: m.__name__)
def test_example_docstrings(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_serverless_fc_answers_robot_messages_and_hands_events_on(
    fake: FakeDingTalk,
    env: dict,
    redis_client: Any,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setattr(serverless_fc, "_app", None)  # a cold start
    server = HttpServer(serverless_fc.handler, "127.0.0.1", 0, threads=2).start()
    try:
        fake.register_callback_url(f"http://127.0.0.1:{server.port}/")
        mid = fake.push_chatbot("order status?")
        assert fake.wait_for_delivery(mid).ok
        reply = fake.wait_for_reply(predicate=lambda r: r.message_id == mid)
        assert reply.text == "got it: order status?"
        assert fake.wait_for_delivery(fake.push_event("user_add_org", {"userId": ["u1"]})).ok
    finally:
        server.stop()
    queued = [json.loads(item) for item in redis_client.lrange(serverless_fc.QUEUE, 0, -1)]
    assert queued == [{"task": "welcome", "text": "welcome, u1"}]
    assert isinstance(serverless_fc._app.dedupe, dingsync.RedisDedupeStore)
    assert fake.violations == []


def test_flask_app_serves_its_pages_and_card_clicks_under_dingtalk(
    fake: FakeDingTalk, env: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flask_app, "APPROVED", {})
    site = flask_app.create_app()
    server = HttpServer(site, "127.0.0.1", 0, threads=2).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        callbacks = site.extensions["dingsync"]
        api = dingsync.ApiClient(fake.credentials, endpoints=fake.endpoints)
        api.cards.register_callback("orders", callbacks.card_url(f"{base}/dingtalk"), "api-s")
        api.cards.create(
            "tpl.order",
            "order-7",
            {"status": "new"},
            callback_type="HTTP",
            callback_route_key="orders",
        )
        assert fake.wait_for_delivery(fake.push_card_callback("order-7", {}, user_id="boss")).ok
        assert fake.cards["order-7"].card_data == {"status": "approved by boss"}
        fake.register_callback_url(f"{base}/dingtalk")
        mid = fake.push_chatbot("how many?")
        assert fake.wait_for_delivery(mid).ok
        assert fake.wait_for_reply(predicate=lambda r: r.message_id == mid).text == (
            "1 order(s) approved so far"
        )
        with urllib.request.urlopen(f"{base}/", timeout=5) as resp:
            assert resp.read() == b"orders: 1 approved"
    finally:
        server.stop()


def test_a_function_compute_cold_start_imports_only_the_callback_path(env: dict) -> None:
    """The benchmark's cold start (a fresh interpreter imports the example and answers one
    encrypted event) loads neither the Stream stack, the send stack nor the emulator: each
    would add tens of milliseconds to every cold start of the function."""
    script = REPO / "benchmarks" / "clients" / "fc_cold.py"
    code = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print(*sorted(sys.modules), flush=True))\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr  # the event was answered with the encrypted success
    loaded = set(out.stdout.split())
    assert "examples.serverless_fc" in loaded
    heavy = ("websocket", "tenacity", "requests", "dingsync.stream", "dingsync.testing", "click")
    assert sorted(loaded.intersection(heavy)) == []
