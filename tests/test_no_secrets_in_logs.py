"""No secret reaches a log record at any level, nor a repr, during a whole stream session."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, List
from urllib.parse import parse_qs, urlsplit

import pytest

import dingsync
from dingsync.testing import FakeDingTalk


def _session_tokens(fake: FakeDingTalk) -> List[str]:
    tokens = []
    for push in fake.pushes:
        data = push.data if push.topic == "/v1.0/im/bot/messages/get" else None
        url = data.get("sessionWebhook") if isinstance(data, dict) else None
        if url:
            tokens += parse_qs(urlsplit(url).query)["session"]
    return tokens


def test_a_full_session_logs_no_secret(
    dingtalk: FakeDingTalk, caplog: pytest.LogCaptureFixture
) -> None:
    """Connect, messages, replies (webhook and OpenAPI fallback), a failing handler, ping,
    disconnect, drop and reconnect, stop: with DEBUG logging on, no record and no repr contains
    the client secret, a ticket, a session webhook token or an access token."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="dingsync")
    replied = threading.Event()
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        ctx.logger.debug("handling %s", msg.text)
        if msg.text == "late":
            dingtalk.expire_session(ctx.message_id)  # the reply must take the OpenAPI path
        if msg.text == "fail":
            raise RuntimeError(f"failed while holding {msg.msg_id}")
        ctx.reply_text(f"echo {msg.text}", at_sender=True)
        if msg.text == "late":
            replied.set()

    @route.event()
    def on_event(ev: dingsync.Event, ctx: dingsync.Context) -> None:
        ctx.logger.info("event %s", ev.event_type)

    config = dingsync.StreamConfig(
        dead_after=2.0,
        disconnect_grace=1.0,
        proxy=None,
        reconnect=dingsync.ReconnectPolicy(initial=0.05, jitter=0.0),
    )
    client = dingsync.StreamClient(
        dingtalk.credentials, route, endpoints=dingtalk.endpoints, config=config
    )
    with client:
        dingtalk.wait_for_connections(1)
        dingtalk.wait_for_ack(dingtalk.push_chatbot("hello"))
        dingtalk.wait_for_reply()
        dingtalk.wait_for_ack(dingtalk.push_event("user_add_org", {"userId": ["u1"]}))
        dingtalk.wait_for_ack(dingtalk.push_chatbot("fail"))
        dingtalk.wait_for_ack(dingtalk.ping())
        dingtalk.disconnect(close_after=0.3)
        dingtalk.wait_until(lambda: len(dingtalk.connections) == 2)
        dingtalk.wait_for_ack(dingtalk.push_chatbot("after disconnect"))
        dingtalk.drop()
        dingtalk.wait_until(lambda: len(dingtalk.connections) == 3)
        dingtalk.wait_for_connections(1)
        dingtalk.wait_for_ack(dingtalk.push_chatbot("late"))
        assert replied.wait(5)
    assert client.api is not None
    token = client.api.access_token().value
    secrets = [dingtalk.client_secret, token]
    secrets += [r.ticket for r in dingtalk.open_requests if r.ticket]
    secrets += _session_tokens(dingtalk)
    assert len(secrets) >= 2 + 3 + 4

    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s")
    # The emulator's loggers are included: users run it under DEBUG logging in their tests too.
    records = list(caplog.records)
    assert any(r.levelno == logging.DEBUG for r in records)
    assert any(r.exc_info for r in records)  # the failing handler's traceback is included
    logged = "\n".join(formatter.format(r) + repr(r.__dict__.get("message_id")) for r in records)
    shown: List[Any] = [client, client.config, client.credentials, dingtalk.credentials, client.api]
    text = logged + "\n".join(repr(x) for x in shown)
    for secret in secrets:
        assert secret not in text
    # A masked value ("ticket=***") is fine; any other value after these keys is a leak.
    assert not re.search(r"(ticket|session|access_token|appsecret)=(?!\*\*\*)", logged)


def test_http_callbacks_log_no_secret(
    dingtalk: FakeDingTalk, caplog: pytest.LogCaptureFixture
) -> None:
    """Robot messages, events and card clicks over HTTP (a failing handler and refused requests
    included), with DEBUG logging on: no record and no repr holds the client secret, the event
    token or aes_key, the card secret, the card apiSecret or a session webhook token."""
    import urllib.error
    import urllib.request

    from dingsync.callbacks import CallbackApp
    from dingworker.http import HttpServer

    caplog.set_level(logging.DEBUG)
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        if msg.text == "fail":
            raise RuntimeError(f"failed while holding {msg.msg_id}")
        ctx.reply_text(f"echo {msg.text}")

    route.event()(lambda ev, ctx: ctx.logger.info("event %s", ev.event_type))
    route.card_callback(lambda cb, ctx: dingsync.CardResponse(card_data={"ok": "1"}))
    card_secret = "card-secret-that-must-not-leak"
    app = CallbackApp(
        route,
        dingtalk.credentials,
        endpoints=dingtalk.endpoints,
        event_token=dingtalk.event_token,
        event_aes_key=dingtalk.event_aes_key,
        card_secret=card_secret,
    )
    server = HttpServer(app, "127.0.0.1", 0, threads=2).start()
    url = f"http://127.0.0.1:{server.port}/"
    try:
        dingtalk.register_callback_url(url)
        dingtalk.wait_for_delivery(dingtalk.push_chatbot("hello"))
        dingtalk.wait_for_delivery(dingtalk.push_chatbot("fail"))
        dingtalk.wait_for_delivery(dingtalk.push_event("user_add_org", {"userId": ["u1"]}))
        api = dingsync.ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints)
        api.cards.register_callback("k", app.card_url(url), "api-secret-not-to-leak")
        api.cards.create("tpl", "c1", {"s": "x"}, callback_type="HTTP", callback_route_key="k")
        dingtalk.wait_for_delivery(dingtalk.push_card_callback("c1", {"a": 1}))
        for query in ("?dingsync_card=wrong-guess-wrong", "?msg_signature=x&timestamp=1&nonce=n"):
            request = urllib.request.Request(
                url + query,
                data=b'{"encrypt": "abc"}',
                headers={"Content-Type": "application/json"},
            )
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(request, timeout=5)
    finally:
        server.stop()
    secrets = [dingtalk.client_secret, dingtalk.event_token, dingtalk.event_aes_key, card_secret]
    secrets += ["api-secret-not-to-leak", *_session_tokens_http(dingtalk)]
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s")
    records = list(caplog.records)
    assert any(r.exc_info for r in records)  # the failing handler's traceback is included
    assert any("refused with 401" in r.getMessage() for r in records)
    logged = "\n".join(formatter.format(r) for r in records)
    shown = [app, app.crypto, app.card_auth, dingtalk.event_crypto, *dingtalk.http_deliveries]
    text = logged + "\n".join(repr(x) for x in shown)
    for secret in secrets:
        assert secret not in text
    assert not re.search(r"(session|dingsync_card)=(?!\*\*\*)", logged)


def _session_tokens_http(fake: FakeDingTalk) -> List[str]:
    tokens = []
    for delivery in fake.http_deliveries:
        url = delivery.payload.get("sessionWebhook") if delivery.kind == "chatbot" else None
        if url:
            tokens += parse_qs(urlsplit(url).query)["session"]
    return tokens
