"""The wire payload builders of dingsync.testing.payloads (no server involved)."""

from __future__ import annotations

import json

import pytest

from dingsync.testing import payloads


def test_frame_headers_are_all_strings_and_data_double_encoded():
    """frame() turns every header value into a string and encodes a mapping `data` once more."""
    f = payloads.frame("EVENT", "*", {"a": 1}, headers={"eventBornTime": 17, "x": True})
    assert all(isinstance(v, str) for v in f["headers"].values())
    assert f["headers"]["eventBornTime"] == "17"
    assert json.loads(f["data"]) == {"a": 1}
    assert f["specVersion"] == "1.0" and f["headers"]["contentType"] == "application/json"


def test_message_ids_are_unique_and_shaped_like_dingtalk():
    """Callback ids look like 212ca9d7_974_1898c159aa6_1783b; system ids have no underscore."""
    ids = {payloads.new_message_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i.split("_")) == 4 for i in ids)
    assert "_" not in payloads.new_system_message_id()


@pytest.mark.parametrize("msgtype", [m for m in payloads.CHATBOT_MSGTYPES if m != "text"])
def test_default_content_of_each_msgtype(msgtype):
    """Every non-text msgtype has a content object shaped as in DingTalk's samples."""
    content = payloads.default_content(msgtype, "spoken")
    expected = {
        "picture": {"pictureDownloadCode", "downloadCode"},
        "richText": {"richText"},
        "audio": {"duration", "downloadCode", "recognition"},
        "video": {"duration", "videoType", "downloadCode"},
        "file": {"spaceId", "fileName", "downloadCode", "fileId"},
        "unknownMsgType": {"unknownMsgType"},
    }[msgtype]
    assert set(content) == expected


def test_unknown_msgtype_needs_explicit_content():
    """default_content refuses a msgtype it does not know."""
    with pytest.raises(ValueError):
        payloads.default_content("hologram")


def test_chatbot_data_text_and_expiry():
    """chatbot_data: the text message, session webhook and its expiry (createAt + 90 min)."""
    d = payloads.chatbot_data("hey", session_webhook="http://h/s", create_at=1000)
    assert d["text"] == {"content": "hey"} and d["sessionWebhook"] == "http://h/s"
    assert d["sessionWebhookExpiredTime"] == 1000 + 5_400_000
    assert "conversationTitle" not in d


def test_card_callback_data_triple_encoding():
    """content and value are the same JSON string; extension is a JSON string too."""
    d = payloads.card_callback_data("t", {"k": "v"}, extension={"e": 1})
    assert d["content"] == d["value"]
    assert json.loads(d["extension"]) == {"e": 1}
    assert d["type"] == "actionCallback" and d["userIdType"] == 1


def test_event_headers_and_ack_builder():
    """event_headers are strings; ack() builds the §3.1 envelope with a JSON-string data."""
    h = payloads.event_headers("chat_update_title", born_ms=5)
    assert h["eventType"] == "chat_update_title" and h["eventBornTime"] == "5"
    a = payloads.ack("m", {"status": "SUCCESS"})
    assert a["headers"] == {"messageId": "m", "contentType": "application/json"}
    assert json.loads(a["data"]) == {"status": "SUCCESS"}
