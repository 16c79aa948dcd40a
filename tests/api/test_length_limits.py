"""Length limits on every send path (issue 13, item 4).

An over-long text or markdown is refused before anything is sent, with ``MessageTooLong``
naming the path, its limit and the message's actual size.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Tuple

import pytest

from dingsync import ChatbotMessage, Context, WebhookRobot
from dingsync import messages as m
from dingsync.api import ApiClient
from dingsync.errors import ConfigurationError, MessageTooLong
from dingsync.frames import Frame
from dingsync.limits import LIMITS
from dingsync.testing import FakeDingTalk

Send = Callable[[FakeDingTalk, ApiClient, m.Message], Any]


def _robot(fake: FakeDingTalk) -> WebhookRobot:
    return WebhookRobot(
        fake.add_webhook_robot("limitstoken"), sleep=lambda _s: None, clock=fake.now
    )


def _session_reply(fake: FakeDingTalk, api: ApiClient, msg: m.Message) -> None:
    mid = fake.push_chatbot("question")
    push = next(p for p in fake.pending if p.message_id == mid)
    ctx = Context(frame=Frame.from_dict(push.frame), message=ChatbotMessage.from_wire(push.data))
    ctx.reply(msg)


PATHS: Tuple[Tuple[str, Send, str, str], ...] = (
    (
        "robot 1:1",
        lambda f, api, msg: api.robot.send_to_users(["u1"], msg),
        "POST",
        "/v1.0/robot/oToMessages/batchSend",
    ),
    (
        "robot group",
        lambda f, api, msg: api.robot.send_to_group("cid1", msg),
        "POST",
        "/v1.0/robot/groupMessages/send",
    ),
    (
        "robot private chat",
        lambda f, api, msg: api.robot.send_to_private_chat("cidP", msg, cool_app_code="C"),
        "POST",
        "/v1.0/robot/privateChatMessages/send",
    ),
    ("custom robot", lambda f, api, msg: _robot(f).send(msg), "POST", "/robot/send"),
    ("session webhook", _session_reply, "POST", "/robot/sendBySession"),
    (
        "work notification",
        lambda f, api, msg: api.notify.send(msg, agent_id=3180001, user_ids=["u1"]),
        "POST",
        "/topapi/message/corpconversation/asyncsend_v2",
    ),
)

# 8,000 CJK characters are 24,000 bytes of UTF-8: over every path's limit, though only 8,000
# characters, which is why the limits count bytes
LONG = "字" * 8_000
MESSAGES = [m.Text(LONG), m.Markdown("Report", LONG)]


@pytest.mark.parametrize("message", MESSAGES, ids=["text", "markdown"])
@pytest.mark.parametrize("path", PATHS, ids=[p[0] for p in PATHS])
def test_every_path_refuses_an_over_long_message_before_sending(
    dingtalk: FakeDingTalk, api: ApiClient, path: Any, message: m.Message
) -> None:
    """MessageTooLong names the path, its limit and the size; DingTalk gets no request."""
    channel, send, method, route = path
    with pytest.raises(MessageTooLong) as info:
        send(dingtalk, api, message)
    error = info.value
    assert isinstance(error, ConfigurationError)
    assert error.channel == channel
    assert error.limit == LIMITS[channel]
    assert error.size > error.limit
    assert f"{error.size:,} bytes" in str(error) and f"at most {error.limit:,}" in str(error)
    assert "nothing was sent" in str(error)
    assert dingtalk.count(method, route) == 0


def test_the_size_is_what_dingtalk_receives(api: ApiClient) -> None:
    """For the robot OpenAPI the limit applies to msgParam, the JSON string DingTalk checks."""
    message = m.Markdown("T", "é" * 7_500)
    _key, param = message.to_openapi()
    with pytest.raises(MessageTooLong) as info:
        api.robot.send_to_group("cid1", message)
    assert info.value.size == len(param.encode("utf-8"))


def test_a_group_message_of_exactly_the_limit_is_sent(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """15,000 bytes of msgParam is allowed (the emulator checks the same figure)."""
    overhead = len(json.dumps({"content": ""}, separators=(",", ":")))
    api.robot.send_to_group("cid1", m.Text("x" * (15_000 - overhead)))
    assert len(dingtalk.group_messages("cid1")) == 1
    with pytest.raises(MessageTooLong):
        api.robot.send_to_group("cid1", m.Text("x" * (15_001 - overhead)))
