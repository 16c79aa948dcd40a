"""Session webhook replies (POST /robot/sendBySession?session=...) on the fake oapi host."""

from __future__ import annotations

import json

import pytest
import requests


def _webhook(fake, **kwargs):
    mid = fake.push_chatbot("hi", **kwargs)
    return mid, fake.pushes[-1].data["sessionWebhook"]


def _post(url, body):
    resp = requests.post(url, json=body, timeout=5)
    assert resp.status_code == 200  # oapi answers every error with HTTP 200
    return resp.json()


VALID = {
    "text": {"msgtype": "text", "text": {"content": "pong"}, "at": {"atUserIds": ["user-1"]}},
    "markdown": {"msgtype": "markdown", "markdown": {"title": "t", "text": "**b**"}},
    "actionCard": {
        "msgtype": "actionCard",
        "actionCard": {
            "title": "t",
            "text": "x",
            "singleTitle": "go",
            "singleURL": "https://example.com",
        },
    },
    "actionCard-btns": {
        "msgtype": "actionCard",
        "actionCard": {
            "title": "t",
            "text": "x",
            "btns": [{"title": "a", "actionURL": "https://a"}],
        },
    },
    "feedCard": {
        "msgtype": "feedCard",
        "feedCard": {"links": [{"title": "a", "messageURL": "https://a", "picURL": "https://p"}]},
    },
    "link": {"msgtype": "link", "link": {"title": "t", "text": "x", "messageUrl": "https://a"}},
}


@pytest.mark.parametrize("kind", sorted(VALID))
def test_supported_msgtypes_are_accepted_and_recorded(fake, kind):
    """Each supported msgtype is answered errcode 0 and recorded against its message."""
    mid, url = _webhook(fake)
    assert _post(url, VALID[kind]) == {"errcode": 0, "errmsg": "ok"}
    (reply,) = fake.replies
    assert reply.message_id == mid and reply.body == VALID[kind]
    assert reply.msg_id == fake.pushes[-1].data["msgId"]


def test_official_sdk_shaped_reply_text(fake):
    """A body posted as raw JSON bytes (how the official SDK sends) is accepted; .text works."""
    mid, url = _webhook(fake)
    body = json.dumps({"msgtype": "text", "text": {"content": "echo"}})
    resp = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=5)
    assert resp.json()["errcode"] == 0
    assert fake.wait_for_reply(timeout=1).text == "echo"


@pytest.mark.parametrize("msgtype", ["image", "file", "voice", "interactiveCard", None])
def test_other_msgtypes_are_unsupported(fake, msgtype):
    """Any other msgtype is 400105 不支持的消息类型 and nothing is recorded."""
    _, url = _webhook(fake)
    body = {"msgtype": msgtype, "image": {"mediaId": "@x"}}
    answer = _post(url, body)
    assert (answer["errcode"], answer["errmsg"]) == (400105, "不支持的消息类型")
    assert fake.replies == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({"msgtype": "text", "text": {}}, "text.content"),
        ({"msgtype": "markdown", "markdown": {"title": "t"}}, "markdown.text"),
        ({"msgtype": "link", "link": {"title": "t", "text": "x"}}, "link.messageUrl"),
        ({"msgtype": "actionCard", "actionCard": {"title": "t", "text": "x"}}, "singleTitle"),
        ({"msgtype": "feedCard", "feedCard": {"links": []}}, "feedCard.links"),
    ],
)
def test_missing_required_fields_are_rejected(fake, body, field):
    """A missing required field is errcode 40035 naming the field."""
    _, url = _webhook(fake)
    answer = _post(url, body)
    assert answer["errcode"] == 40035 and field in answer["errmsg"]


def test_unknown_session_is_300001(fake):
    """An unknown session token is 300001 session 不存在."""
    url = fake.oapi_base + "/robot/sendBySession?session=nope"
    assert _post(url, VALID["text"])["errcode"] == 300001


def test_session_expires_by_emulator_clock(fake):
    """After sessionWebhookExpiredTime (advance()), the webhook answers 300001."""
    _, url = _webhook(fake, session_webhook_ttl=60.0)
    fake.advance(59)
    assert _post(url, VALID["text"])["errcode"] == 0
    fake.advance(2)
    answer = _post(url, VALID["text"])
    assert (answer["errcode"], answer["errmsg"]) == (300001, "session 不存在")
    assert len(fake.replies) == 1


def test_expire_session_knob(fake):
    """expire_session(messageId) expires that message's webhook only."""
    mid, url = _webhook(fake)
    _, other = _webhook(fake)
    fake.expire_session(mid)
    assert _post(url, VALID["text"])["errcode"] == 300001
    assert _post(other, VALID["text"])["errcode"] == 0
    with pytest.raises(KeyError):
        fake.expire_session("no-such-message")


def test_wait_for_reply_with_predicate(dingtalk):
    """wait_for_reply returns the first matching reply, or raises TimeoutError."""
    _, url1 = _webhook(dingtalk)
    mid2, url2 = _webhook(dingtalk)
    _post(url1, VALID["markdown"])
    _post(url2, VALID["text"])
    reply = dingtalk.wait_for_reply(predicate=lambda r: r.message_id == mid2)
    assert reply.text == "pong"
    with pytest.raises(TimeoutError):
        dingtalk.wait_for_reply(timeout=0.1, predicate=lambda r: r.msgtype == "link")
