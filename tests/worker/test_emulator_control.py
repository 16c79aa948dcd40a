"""The emulator's control API (``/_emulator/...``), used by ``dingworker --emulator`` and the demo."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
import requests

import dingsync
from dingsync.testing import FakeDingTalk


def make_router(seen: List[Any]) -> dingsync.Router:
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        seen.append(msg)
        ctx.reply_text(f"{msg.sender_nick}: {msg.text}")

    @route.event()
    def on_event(event: dingsync.Event, ctx: dingsync.Context) -> None:
        seen.append(event)

    @route.card_callback
    def on_card(cb: dingsync.CardCallback, ctx: dingsync.Context) -> dingsync.CardResponse:
        seen.append(cb)
        return dingsync.CardResponse(card_data={"clicked": cb.params.get("k")})

    return route


def test_status_waits_for_a_connection(fake: FakeDingTalk, http: requests.Session) -> None:
    """status reports 0 connections, then 1 once a client connects (wait= long-polls)."""
    assert http.get(fake.api_base + "/_emulator/status").json() == {
        "clientId": fake.client_id,
        "connections": 0,
    }
    with dingsync.StreamClient(fake.credentials, make_router([]), endpoints=fake.endpoints):
        status = http.get(fake.api_base + "/_emulator/status", params={"wait": 5}).json()
    assert status["connections"] == 1


def test_push_chatbot_event_and_card_callback(fake: FakeDingTalk, http: requests.Session) -> None:
    """Each push reaches the client; replies and acks are listed per message id."""
    seen: List[Any] = []
    base = fake.api_base + "/_emulator"
    with dingsync.StreamClient(fake.credentials, make_router(seen), endpoints=fake.endpoints):
        chat = http.post(
            base + "/chatbot",
            json={"text": "1+1", "senderNick": "Ann", "conversation_type": "2"},
        ).json()["messageId"]
        event = http.post(
            base + "/event", json={"eventType": "user_add_org", "data": {"userId": ["u1"]}}
        ).json()["messageId"]
        card = http.post(
            base + "/card_callback",
            json={"out_track_id": "t-1", "params": {"k": "v"}, "userId": "bob"},
        ).json()["messageId"]
        replies = http.get(base + "/replies", params={"message_id": chat, "wait": 5}).json()
        acks: Dict[str, Any] = {
            mid: http.get(base + "/acks", params={"message_id": mid, "wait": 5}).json()["acks"]
            for mid in (chat, event, card)
        }
    assert replies["replies"][0]["text"] == "Ann: 1+1"
    assert replies["replies"][0]["message_id"] == chat
    assert "session" not in replies["replies"][0]  # the webhook's credential is not listed
    assert all(len(a) == 1 and a[0]["code"] == 200 for a in acks.values())
    assert seen[0].is_group and seen[0].sender_nick == "Ann"
    assert isinstance(seen[1], dingsync.Event) and seen[1].data == {"userId": ["u1"]}
    assert isinstance(seen[2], dingsync.CardCallback) and seen[2].user_id == "bob"


def test_lists_without_a_message_id(fake: FakeDingTalk, http: requests.Session) -> None:
    """Without message_id every recorded reply / ack is listed (none yet: empty lists)."""
    assert http.get(fake.api_base + "/_emulator/replies").json() == {"replies": []}
    assert http.get(fake.api_base + "/_emulator/acks").json() == {"acks": []}


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/chatbot", {"text": 3}, "text must be a string"),
        ("/chatbot", {"text": "x", "connection": "c"}, "unknown field(s) connection"),
        ("/event", {"data": {}}, "event_type is required"),
        ("/event", {"event_type": "x", "data": [1]}, "data must be a JSON object"),
        ("/card_callback", {"params": {}}, "out_track_id is required"),
        ("/card_callback", {"out_track_id": "t", "bogus": 1}, "unknown field(s) bogus"),
    ],
)
def test_bad_requests_are_400_with_a_reason(
    fake: FakeDingTalk, http: requests.Session, path: str, body: Dict[str, Any], fragment: str
) -> None:
    """Wrong fields get DingTalk's error envelope with a message saying what is wrong."""
    response = http.post(fake.api_base + "/_emulator" + path, json=body)
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidParameter"
    assert fragment in response.json()["message"]


def test_body_must_be_json(fake: FakeDingTalk, http: requests.Session) -> None:
    """A non-JSON body is a 400, as is a bad wait value."""
    assert http.post(fake.api_base + "/_emulator/chatbot", data=b"nope").status_code == 400
    response = http.get(fake.api_base + "/_emulator/replies", params={"wait": "soon"})
    assert response.status_code == 400 and "wait must be a number" in response.json()["message"]
