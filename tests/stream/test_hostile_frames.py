"""Frames crafted to break a parser never kill the reader (regressions found by the soak's fuzzer)."""

from __future__ import annotations

import json

import dingsync
from dingsync.testing import FakeDingTalk

from .conftest import MakeClient
from .test_stream_client import Calls


def _router(calls: Calls) -> dingsync.Router:
    route = dingsync.Router()
    route.chatbot(lambda msg, ctx: calls.add(msg.text))
    return route


def _still_serving(dingtalk: FakeDingTalk, calls: Calls, text: str) -> None:
    """A well-formed message after the hostile one is handled, on the same connection."""
    message_id = dingtalk.push_chatbot(text)
    assert dingtalk.wait_for_ack(message_id)["code"] == 200
    assert text in calls.items
    assert len(dingtalk.connections) == 1, "the hostile frame cost a reconnect"


def test_deeply_nested_json_is_refused_not_fatal(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """5,000 levels of nesting (RecursionError in json) is a malformed frame, not a reader death."""
    calls = Calls()
    make_client(_router(calls))
    dingtalk.wait_for_connections(1)
    dingtalk.push_raw("[" * 5000 + "]" * 5000)
    _still_serving(dingtalk, calls, "after nesting")


def test_deeply_nested_data_gets_an_error_ack(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """Nesting inside ``data`` is answered with a non-200 ack instead of leaving it unacked."""
    calls = Calls()
    make_client(_router(calls))
    dingtalk.wait_for_connections(1)
    frame = {
        "specVersion": "1.0",
        "type": "CALLBACK",
        "headers": {
            "messageId": "nested-1",
            "topic": "/v1.0/im/bot/messages/get",
            "contentType": "application/json",
        },
        "data": "[" * 5000 + "]" * 5000,
    }
    dingtalk.push_raw(json.dumps(frame))
    dingtalk.wait_until(
        lambda: any(a["headers"]["messageId"] == "nested-1" for a in dingtalk.acks),
        5,
        "the frame with nested data was not acked",
    )
    ack = next(a for a in dingtalk.acks if a["headers"]["messageId"] == "nested-1")
    assert ack["code"] == 400
    _still_serving(dingtalk, calls, "after nested data")


def test_invalid_utf8_is_skipped_and_the_reader_lives(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """A text frame that is not UTF-8 (a lone surrogate's bytes in the messageId) is dropped."""
    calls = Calls()
    make_client(_router(calls))
    dingtalk.wait_for_connections(1)
    dingtalk.push_raw(b'{"type":"CALLBACK","headers":{"messageId":"\xed\xa0\x80","topic":"t"}}')
    dingtalk.push_raw(b"\x00\x01\x02", binary=True)
    _still_serving(dingtalk, calls, "after bad bytes")


def test_ping_with_a_lone_surrogate_escape_is_answered(
    dingtalk: FakeDingTalk, make_client: MakeClient
) -> None:
    """A messageId holding a JSON ``\\ud800`` escape is valid JSON; its ack must be sendable."""
    calls = Calls()
    make_client(_router(calls))
    dingtalk.wait_for_connections(1)
    dingtalk.push_raw(
        '{"type":"SYSTEM","headers":{"messageId":"p-\\ud800","topic":"ping",'
        '"contentType":"application/json"},"data":"{\\"opaque\\":\\"x\\"}"}'
    )
    dingtalk.wait_until(
        lambda: any(a["headers"]["messageId"].startswith("p-") for a in dingtalk.acks),
        5,
        "the ping with a surrogate in its id was not answered",
    )
    _still_serving(dingtalk, calls, "after surrogate")
