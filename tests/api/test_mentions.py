"""@-mentions (issue 13, item 1): sent where DingTalk can mention, refused where it cannot.

The custom robot's webhook and the session webhook carry an ``at`` block; the robot OpenAPI and
work notifications have none, so a message with mentions is refused there with a typed error
naming the two channels that can, by the library and the CLI alike.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Tuple

import pytest
from click.testing import CliRunner

from dingsync import ChatbotMessage, Context, WebhookRobot
from dingsync import messages as m
from dingsync.api import ApiClient
from dingsync.cli import main
from dingsync.errors import MentionNotSupported, UnsupportedMessage
from dingsync.frames import Frame
from dingsync.testing import FakeDingTalk

MENTIONING = [
    m.Text("deploy done", at_user_ids=["manager593"]),
    m.Text("deploy done", at_mobiles=["13800000000"]),
    m.Markdown("Deploy", "**done**", at_all=True),
]

SENDS: Tuple[Tuple[str, Callable[[ApiClient, m.Message], Any], str, str], ...] = (
    (
        "robot 1:1",
        lambda api, msg: api.robot.send_to_users(["u1"], msg),
        "POST",
        "/v1.0/robot/oToMessages/batchSend",
    ),
    (
        "robot group",
        lambda api, msg: api.robot.send_to_group("cid1", msg),
        "POST",
        "/v1.0/robot/groupMessages/send",
    ),
    (
        "robot private chat",
        lambda api, msg: api.robot.send_to_private_chat("cidP", msg, cool_app_code="COOL"),
        "POST",
        "/v1.0/robot/privateChatMessages/send",
    ),
    (
        "work notification",
        lambda api, msg: api.notify.send(msg, agent_id=3180001, user_ids=["u1"]),
        "POST",
        "/topapi/message/corpconversation/asyncsend_v2",
    ),
)


@pytest.mark.parametrize("message", MENTIONING, ids=["user", "mobile", "all"])
@pytest.mark.parametrize("send", SENDS, ids=[s[0] for s in SENDS])
def test_paths_without_mentions_refuse_them_and_name_the_ones_with(
    dingtalk: FakeDingTalk, api: ApiClient, send: Any, message: m.Message
) -> None:
    """The robot OpenAPI and work notifications raise MentionNotSupported; nothing is sent."""
    _name, call, method, path = send
    with pytest.raises(MentionNotSupported) as info:
        call(api, message)
    assert isinstance(info.value, UnsupportedMessage)
    text = str(info.value)
    assert "custom robot" in text and "session webhook" in text
    assert dingtalk.count(method, path) == 0


def test_the_same_message_without_mentions_goes_out(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """without_mentions() is the explicit way to send the text alone."""
    api.robot.send_to_group("cid1", MENTIONING[0].without_mentions())
    assert [x.text for x in dingtalk.group_messages("cid1")] == ["deploy done"]


def test_the_custom_robot_mentions(dingtalk: FakeDingTalk) -> None:
    """A WebhookRobot sends the at block, with the @ in the text (DingTalk highlights only then)."""
    url = dingtalk.add_webhook_robot("mentiontoken")
    robot = WebhookRobot(url, sleep=lambda _s: None, clock=dingtalk.now)
    robot.send(m.Text("deploy done", at_user_ids=["manager593"], at_mobiles=["13800000000"]))
    body = dingtalk.webhook_messages[0].body
    assert body["at"] == {
        "atUserIds": ["manager593"],
        "atMobiles": ["13800000000"],
        "isAtAll": False,
    }
    assert body["text"]["content"] == "deploy done @manager593 @13800000000"


def _pending(fake: FakeDingTalk, **kwargs: Any) -> Tuple[ChatbotMessage, Frame]:
    mid = fake.push_chatbot(**kwargs)
    push = next(p for p in fake.pending if p.message_id == mid)
    return ChatbotMessage.from_wire(push.data), Frame.from_dict(push.frame)


def test_the_session_webhook_mentions(dingtalk: FakeDingTalk) -> None:
    """ctx.reply carries mentions through the session webhook."""
    msg, frame = _pending(dingtalk, conversation_type="2", conversation_id="cidG")
    Context(frame=frame, message=msg).reply(m.Markdown("Ping", "look", at_user_ids=["u9"]))
    assert dingtalk.wait_for_reply().body["at"]["atUserIds"] == ["u9"]


def test_a_reply_falling_back_to_the_openapi_drops_the_mention_and_says_so(
    dingtalk: FakeDingTalk, api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    """After the session expired, reply_text(at_sender=True) still replies, with a warning."""
    msg, frame = _pending(dingtalk, sender_staff_id="staff-3")
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    ctx = Context(frame=frame, message=msg, api=api, now=lambda: later)
    ctx.reply_text("done", at_sender=True)
    assert [x.text for x in dingtalk.messages_to("staff-3")] == ["done"]
    assert "cannot @-mention" in caplog.text


@pytest.mark.parametrize(
    "target",
    [["--group", "cid1"], ["--user", "u1"], ["--notify", "--agent-id", "3180001", "--user", "u1"]],
    ids=["group", "user", "notify"],
)
def test_the_cli_refuses_mentions_with_the_librarys_words(
    dingtalk: FakeDingTalk,
    target: list,  # type: ignore[type-arg]
) -> None:
    """dingsync send --at-user on a path without mentions: exit 2, the library's message."""
    result = CliRunner().invoke(
        main, ["send", *target, "--at-user", "manager593", "hi"], env=dingtalk.env()
    )
    assert result.exit_code == 2
    with pytest.raises(MentionNotSupported) as info:
        m.Text("hi", at_user_ids=["manager593"]).to_openapi()
    expected = str(info.value).replace("the robot OpenAPI", "")
    assert expected.split(":")[1].strip() in result.output
    assert dingtalk.sent == [] and dingtalk.work_notices == []


def test_the_cli_mentions_through_the_custom_robot(dingtalk: FakeDingTalk) -> None:
    url = dingtalk.add_webhook_robot("clitokenmention")
    env = {**dingtalk.env(), "DINGTALK_WEBHOOK": url}
    result = CliRunner().invoke(main, ["send", "--at-all", "all hands"], env=env)
    assert result.exit_code == 0, result.output
    assert dingtalk.webhook_messages[0].body["at"]["isAtAll"] is True
