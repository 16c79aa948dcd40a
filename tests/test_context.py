"""Context: replies through the session webhook, expiry, the OpenAPI fallback, the logger."""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta, timezone
from typing import Any, List, Tuple

import pytest

import dingsync
from dingsync import ChatbotMessage, Context
from dingsync.context import WebhookPoster
from dingsync.errors import ApiError, ConfigurationError, SessionExpired, TransportError
from dingsync.frames import Frame
from dingsync.messages import Image, Markdown, Text
from dingsync.testing import FakeDingTalk


def pending_message(fake: FakeDingTalk, **kwargs: Any) -> Tuple[ChatbotMessage, Frame]:
    """Push a chatbot message with no client connected and take it from the pending queue."""
    mid = fake.push_chatbot(**kwargs)
    push = next(p for p in fake.pending if p.message_id == mid)
    return ChatbotMessage.from_wire(push.data), Frame.from_dict(push.frame)


class FakeRobot:
    def __init__(self) -> None:
        self.calls: List[Tuple[str, Any, Any]] = []

    def send_to_group(self, open_conversation_id: str, message: Any) -> str:
        self.calls.append(("group", open_conversation_id, message))
        return "key"

    def send_to_users(self, user_ids: List[str], message: Any) -> None:
        self.calls.append(("users", user_ids, message))


class FakeApi:
    def __init__(self) -> None:
        self.robot = FakeRobot()


def test_reply_text_goes_through_the_session_webhook(dingtalk: FakeDingTalk) -> None:
    """reply_text posts to the message's session webhook; at_sender mentions the sender."""
    msg, frame = pending_message(dingtalk, text="hi", sender_staff_id="staff-7")
    ctx = Context(frame=frame, message=msg)
    ctx.reply_text("hello back", at_sender=True)
    reply = dingtalk.wait_for_reply()
    assert reply.msgtype == "text" and reply.message_id == frame.message_id
    assert reply.text is not None and reply.text.startswith("hello back")
    assert reply.body["at"]["atUserIds"] == ["staff-7"]
    assert ctx.replies == [reply.body]


def test_reply_with_builders_strings_and_raw_bodies(dingtalk: FakeDingTalk) -> None:
    msg, frame = pending_message(dingtalk)
    ctx = Context(frame=frame, message=msg)
    ctx.reply_markdown("Title", "**bold**")
    ctx.reply("plain string")
    ctx.reply(Markdown("T2", "two"))
    ctx.reply({"msgtype": "text", "text": {"content": "raw"}})
    dingtalk.wait_until(lambda: len(dingtalk.replies) == 4)
    assert [(r.msgtype, r.text) for r in dingtalk.replies] == [
        ("markdown", "**bold**"),
        ("text", "plain string"),
        ("markdown", "two"),
        ("text", "raw"),
    ]


def test_expired_on_the_server_raises_session_expired(dingtalk: FakeDingTalk) -> None:
    """errcode 300001 becomes SessionExpired when no api is available."""
    msg, frame = pending_message(dingtalk)
    dingtalk.expire_session(frame.message_id)
    with pytest.raises(SessionExpired) as info:
        Context(frame=frame, message=msg).reply_text("too late")
    assert info.value.code == "300001"
    assert "session=" not in str(info.value)


def test_locally_expired_webhook_is_not_even_tried(dingtalk: FakeDingTalk) -> None:
    """An expired sessionWebhookExpiredTime is checked before any HTTP call."""
    msg, frame = pending_message(dingtalk)
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    ctx = Context(frame=frame, message=msg, now=lambda: later)
    with pytest.raises(SessionExpired):
        ctx.reply_text("too late")
    assert dingtalk.count("POST", "/robot/sendBySession") == 0


def test_expired_webhook_falls_back_to_the_openapi(dingtalk: FakeDingTalk) -> None:
    """With an ApiClient, an expired group reply goes to send_to_group, a 1:1 to send_to_users."""
    api = dingsync.ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints)
    group, group_frame = pending_message(dingtalk, conversation_type="2", conversation_id="cidG")
    single, single_frame = pending_message(dingtalk, sender_staff_id="staff-9")
    dingtalk.expire_session(group_frame.message_id)
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    Context(frame=group_frame, message=group, api=api).reply_text("to the group")
    Context(frame=single_frame, message=single, api=api, now=lambda: later).reply(Text("to you"))
    assert [m.text for m in dingtalk.group_messages("cidG")] == ["to the group"]
    assert [m.text for m in dingtalk.messages_to("staff-9")] == ["to you"]
    assert dingtalk.replies == []
    api.close()


def test_fallback_routes_by_conversation_type_and_webhook_less_types() -> None:
    """The fallback picks the conversation; images, which webhooks cannot carry, go to the API."""
    api = FakeApi()
    gone = {"sessionWebhook": "https://x.invalid/s?session=t", "sessionWebhookExpiredTime": 1}
    group = ChatbotMessage.from_wire(
        {
            "msgId": "a",
            "msgtype": "text",
            "text": {"content": "x"},
            "conversationType": "2",
            "conversationId": "cid1",
            **gone,
        }
    )
    single = ChatbotMessage.from_wire(
        {
            "msgId": "b",
            "msgtype": "text",
            "text": {"content": "x"},
            "conversationType": "1",
            "senderStaffId": "u9",
            "sessionWebhook": "https://x.invalid/s?session=t",
        }
    )
    Context.for_testing(group, api=api).reply("hi")  # type: ignore[arg-type]
    image = Image("https://example.com/a.png")
    testing = Context.for_testing(single, api=api)  # type: ignore[arg-type]
    testing.reply(image)
    assert [(kind, target) for kind, target, _ in api.robot.calls] == [
        ("group", "cid1"),
        ("users", ["u9"]),
    ]
    assert testing.replies == []


def test_raw_bodies_and_unsupported_messages_need_the_webhook() -> None:
    expired = ChatbotMessage.from_wire(
        {
            "msgId": "a",
            "msgtype": "text",
            "text": {"content": "x"},
            "sessionWebhook": "https://x.invalid/s?session=t",
            "sessionWebhookExpiredTime": 1,
        }
    )
    with pytest.raises(SessionExpired):
        Context.for_testing(expired, api=FakeApi()).reply({"msgtype": "text"})  # type: ignore[arg-type]
    valid = ChatbotMessage.from_wire(
        {
            "msgId": "a",
            "msgtype": "text",
            "text": {"content": "x"},
            "sessionWebhook": "https://x.invalid/s?session=t",
        }
    )
    with pytest.raises(ConfigurationError):
        Context.for_testing(valid).reply(Image("https://example.com/a.png"))


def test_reply_needs_a_chatbot_message() -> None:
    with pytest.raises(ConfigurationError, match="chatbot message"):
        Context.for_testing({"raw": "dict"}).reply_text("x")


def test_other_errcodes_become_api_errors(dingtalk: FakeDingTalk) -> None:
    """A refused body is an ApiError with DingTalk's code."""
    msg, frame = pending_message(dingtalk)
    with pytest.raises(ApiError) as info:
        Context(frame=frame, message=msg).reply({"msgtype": "image", "image": {}})
    assert info.value.code == "400105" and not isinstance(info.value, SessionExpired)


def test_network_errors_never_quote_the_webhook_url() -> None:
    """A connection failure is a TransportError without the session token in it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    poster = WebhookPoster(timeout=1.0)
    with pytest.raises(TransportError) as info:
        poster(f"http://127.0.0.1:{port}/robot/sendBySession?session=SECRET123", {"msgtype": "x"})
    text = str(info.value)
    assert "SECRET123" not in text and info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_context_attributes_and_logger(caplog: pytest.LogCaptureFixture) -> None:
    """message_id, redelivered, api, frame, message; the logger carries the message id."""
    frame = Frame.from_dict({"type": "CALLBACK", "headers": {"messageId": "m-5", "topic": "/t"}})
    api = FakeApi()
    ctx = Context(frame=frame, message={"k": 1}, api=api, redelivered=True)  # type: ignore[arg-type]
    assert (ctx.message_id, ctx.redelivered, ctx.api, ctx.frame, ctx.message) == (
        "m-5",
        True,
        api,
        frame,
        {"k": 1},
    )
    with caplog.at_level(logging.INFO, logger="dingsync"):
        ctx.logger.info("working on it")
    record = caplog.records[-1]
    assert record.message_id == "m-5" and record.topic == "/t"  # type: ignore[attr-defined]
    assert "m-5" in repr(ctx)
    plain = Context.for_testing()
    assert plain.message_id == "test-message" and plain.api is None and not plain.redelivered
