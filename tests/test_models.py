"""Typed payloads: every chatbot msgtype, card callbacks, card responses and events."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from dingsync.errors import ProtocolError
from dingsync.frames import Frame
from dingsync.models import (
    AudioContent,
    CardCallback,
    CardResponse,
    ChatbotMessage,
    Event,
    FileContent,
    PictureContent,
    RichTextContent,
    TextContent,
    UnknownContent,
    VideoContent,
)

# protocol.md §2.6: the documented group chatbot message (data, decoded once).
GROUP_TEXT = {
    "conversationId": "cidAsXSBLnA==",
    "atUsers": [{"dingtalkId": "$:LWCP_v1:$4*****TgHFUDZ8Qi8qr3"}],
    "chatbotCorpId": "ding9f*****cd16741",
    "chatbotUserId": "$:LWCP_v1:$*****x3vTgHFUDZ8Qi8qr3",
    "msgId": "msgLICYe****HgY4JtMQw==",
    "senderNick": "用户",
    "isAdmin": True,
    "senderStaffId": "16650***698",
    "sessionWebhookExpiredTime": 1690367502152,
    "createAt": 1690362101894,
    "senderCorpId": "ding9*****d16741",
    "conversationType": "2",
    "senderId": "$:LWCP_v1:***jqTgIfhRX9Q==",
    "conversationTitle": "测试群",
    "isInAtList": True,
    "sessionWebhook": "https://oapi.dingtalk.com/robot/sendBySession?session=76da36b48f59e8",
    "text": {"content": " 测试数据"},
    "robotCode": "ding*****r3xc0b",
    "msgtype": "text",
    "senderPlatform": "Win",
}


def test_documented_group_message_is_fully_typed() -> None:
    """The documented sample decodes into typed fields, with the @-mention space trimmed."""
    msg = ChatbotMessage.from_wire(GROUP_TEXT)
    assert msg.text == "测试数据"
    assert isinstance(msg.content, TextContent) and msg.content.content == " 测试数据"
    assert msg.is_group and msg.conversation_type == "2"
    assert msg.sender_staff_id == "16650***698"
    assert msg.at_users[0].dingtalk_id == "$:LWCP_v1:$4*****TgHFUDZ8Qi8qr3"
    assert msg.session_webhook_expires_at == datetime(
        2023, 7, 26, 10, 31, 42, 152000, tzinfo=timezone.utc
    )
    assert msg.sender_platform == "Win"
    assert msg.to_wire() == GROUP_TEXT


def test_session_webhook_is_not_in_repr() -> None:
    """Anyone holding the session webhook URL can post to the chat, so repr() hides it."""
    msg = ChatbotMessage.from_wire(GROUP_TEXT)
    assert "sendBySession" not in repr(msg)
    assert "76da36b48f59e8" not in repr(msg)


def test_session_webhook_validity_follows_its_expiry() -> None:
    """The webhook is valid before sessionWebhookExpiredTime and not after."""
    msg = ChatbotMessage.from_wire(GROUP_TEXT)
    assert msg.session_webhook_valid(datetime(2023, 7, 26, 10, 0, tzinfo=timezone.utc))
    assert not msg.session_webhook_valid(datetime(2023, 7, 26, 11, 0, tzinfo=timezone.utc))


@pytest.mark.parametrize(
    ("msgtype", "content", "kind", "text", "codes"),
    [
        (
            "picture",
            {"pictureDownloadCode": "p1", "downloadCode": "d1"},
            PictureContent,
            "",
            ["d1"],
        ),
        (
            "richText",
            {
                "richText": [
                    {"text": "see "},
                    {"pictureDownloadCode": "p", "downloadCode": "d2", "type": "picture"},
                    {"text": "this"},
                ]
            },
            RichTextContent,
            "see this",
            ["d2"],
        ),
        (
            "audio",
            {"downloadCode": "d3", "recognition": "你好", "duration": "3000"},
            AudioContent,
            "你好",
            ["d3"],
        ),
        (
            "video",
            {"duration": "5", "videoType": "mp4", "downloadCode": "d4"},
            VideoContent,
            "",
            ["d4"],
        ),
        (
            "file",
            {"spaceId": "223", "fileName": "foobar.zip", "downloadCode": "d5", "fileId": "117"},
            FileContent,
            "",
            ["d5"],
        ),
        (
            "unknownMsgType",
            {"unknownMsgType": "用户发送了一条消息，机器人暂不支持接收。"},
            UnknownContent,
            "",
            [],
        ),
    ],
)
def test_every_msgtype_is_typed_with_its_attachments(
    msgtype: str, content: dict[str, object], kind: type, text: str, codes: list[str]
) -> None:
    """Each msgtype of protocol.md §9.1 gets its own content class; download codes are exposed."""
    wire = {"msgId": "m", "msgtype": msgtype, "content": content, "conversationType": "1"}
    msg = ChatbotMessage.from_wire(wire)
    assert isinstance(msg.content, kind)
    assert msg.text == text
    assert [a.download_code for a in msg.attachments] == codes
    assert msg.to_wire() == wire


def test_file_attachment_keeps_its_name() -> None:
    """A file attachment carries the file name, so a download can keep it."""
    msg = ChatbotMessage.from_wire(
        {"msgId": "m", "msgtype": "file", "content": {"downloadCode": "d", "fileName": "a.pdf"}}
    )
    assert msg.attachments[0].file_name == "a.pdf"
    assert msg.attachments[0].kind == "file"


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        ({"msgtype": "text", "text": {"content": "x"}}, "data.msgId"),
        ({"msgId": "m"}, "data.msgtype"),
        ({"msgId": "m", "msgtype": "text"}, "data.text"),
        ({"msgId": "m", "msgtype": "text", "text": {"content": 5.5}}, "data.text.content"),
        (
            {"msgId": "m", "msgtype": "text", "text": {"content": "x"}, "isAdmin": "yes"},
            "data.isAdmin",
        ),
        (
            {"msgId": "m", "msgtype": "text", "text": {"content": "x"}, "atUsers": {}},
            "data.atUsers",
        ),
        (
            {"msgId": "m", "msgtype": "text", "text": {"content": "x"}, "createAt": "soon"},
            "data.createAt",
        ),
        (
            {"msgId": "m", "msgtype": "text", "text": {"content": "x"}, "createAt": "²"},
            "data.createAt",
        ),
        (
            {"msgId": "m", "msgtype": "richText", "content": {"richText": "no"}},
            "data.content.richText",
        ),
        ({"msgId": "m", "msgtype": "file", "content": []}, "data.content"),
    ],
)
def test_malformed_chatbot_payloads_name_the_field(wire: dict[str, object], field: str) -> None:
    """Wrong or missing fields raise ProtocolError naming the field, never KeyError/TypeError."""
    with pytest.raises(ProtocolError) as info:
        ChatbotMessage.from_wire(wire)
    assert info.value.field == field


# protocol.md §2.7: the documented card callback, with content/value/extension as JSON strings.
CARD_DATA = {
    "extension": "{}",
    "corpId": "dingxxxx",
    "spaceType": "im",
    "userIdType": 1,
    "type": "actionCallback",
    "userId": "xxxx",
    "content": '{"cardPrivateData":{"actionIds":["single_button_node_ocltl6e6foq"],"params":{"action":"like"}}}',
    "spaceId": "cidxxxx",
    "outTrackId": "xxxx",
    "value": '{"cardPrivateData":{"actionIds":["single_button_node_ocltl6e6foq"],"params":{"action":"like"}}}',
}


def test_card_callback_decodes_the_nested_json_strings() -> None:
    """content, value and extension are decoded; params and action ids are one attribute away."""
    cb = CardCallback.from_wire(CARD_DATA)
    assert cb.params == {"action": "like"}
    assert cb.action_ids == ("single_button_node_ocltl6e6foq",)
    assert cb.extension == {}
    assert cb.user_id_type == 1 and cb.space_type == "im"
    assert CardCallback.from_wire(cb.to_wire()) == cb


def test_card_callback_with_broken_nested_json_names_the_field() -> None:
    """A content string that is not JSON raises ProtocolError naming data.content."""
    with pytest.raises(ProtocolError) as info:
        CardCallback.from_wire({**CARD_DATA, "content": "{not json"})
    assert info.value.field == "data.content"


def test_card_response_renders_every_value_as_a_string() -> None:
    """cardParamMap values must be strings on the wire (openapi.md §7.7)."""
    wire = CardResponse(
        card_data={"n": 1, "ok": True, "s": "x"}, user_private_data={"l": [1]}
    ).to_wire()
    assert wire["cardData"] == {"cardParamMap": {"n": "1", "ok": "true", "s": "x"}}
    assert wire["userPrivateData"] == {"cardParamMap": {"l": "[1]"}}
    assert wire["cardUpdateOptions"] == {
        "updateCardDataByKey": True,
        "updatePrivateDataByKey": True,
    }


def test_event_from_documented_frame() -> None:
    """The documented EVENT frame becomes an Event with typed header fields and data."""
    frame = Frame.from_dict(
        {
            "specVersion": "1.0",
            "type": "EVENT",
            "headers": {
                "messageId": "213d841d_972_1898bb26334_70a7",
                "topic": "*",
                "eventId": "e-1",
                "eventBornTime": "1683533823336",
                "eventCorpId": "ding9f50b15bxxxx16741",
                "eventType": "user_add_org",
                "eventUnifiedAppId": "bbb381b6",
            },
            "data": json.dumps({"timeStamp": "1685501863357", "userId": ["015xxxx227"]}),
        }
    )
    event = Event.from_frame(frame)
    assert event.event_type == "user_add_org"
    assert event.corp_id == "ding9f50b15bxxxx16741"
    assert event.born_at == datetime(2023, 5, 8, 8, 17, 3, 336000, tzinfo=timezone.utc)
    assert event.data["userId"] == ["015xxxx227"]
    assert Event.from_frame(event.to_frame("m")) == event


def test_event_with_non_ascii_digits_as_born_time_is_a_protocol_error() -> None:
    """'²' passes str.isdigit() but is no number; it must not escape as ValueError."""
    frame = Frame.from_dict(
        {
            "type": "EVENT",
            "headers": {"messageId": "m", "topic": "*", "eventType": "x", "eventBornTime": "²"},
        }
    )
    with pytest.raises(ProtocolError):
        Event.from_frame(frame)


def test_event_without_type_is_a_protocol_error() -> None:
    """An EVENT frame without eventType cannot be routed and says so."""
    frame = Frame.from_dict({"type": "EVENT", "headers": {"messageId": "m", "topic": "*"}})
    with pytest.raises(ProtocolError) as info:
        Event.from_frame(frame)
    assert info.value.field == "headers.eventType"
