"""Router: every decorator form, subscriptions, and pure dispatch (no network, no threads)."""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, Optional

import pytest

import dingsync
from dingsync import Ack, CardResponse, Context, Frame, Router
from dingsync.errors import ConfigurationError
from dingsync.frames import Topic
from dingsync.routing import AckPolicy, RouteKind


def callback_frame(topic: str, data: Any, mid: str = "m-1") -> Frame:
    return Frame.from_dict(
        {
            "type": "CALLBACK",
            "headers": {"messageId": mid, "topic": topic},
            "data": json.dumps(data),
        }
    )


def chatbot_frame(text: str = "hi", mid: str = "m-1", **extra: Any) -> Frame:
    data = {"msgId": "msg-1", "msgtype": "text", "text": {"content": text}, **extra}
    return callback_frame(Topic.CHATBOT, data, mid)


def event_frame(event_type: str, data: Any, mid: str = "e-1") -> Frame:
    return Frame.from_dict(
        {
            "type": "EVENT",
            "headers": {"messageId": mid, "topic": "*", "eventType": event_type},
            "data": json.dumps(data),
        }
    )


def card_frame(mid: str = "c-1") -> Frame:
    content = json.dumps({"cardPrivateData": {"actionIds": ["ok"], "params": {"action": "like"}}})
    return callback_frame(
        Topic.CARD_CALLBACK, {"outTrackId": "track-1", "userId": "u1", "content": content}, mid
    )


def data(ack: Ack) -> Any:
    return json.loads(ack.data)


# -- registration -------------------------------------------------------------------------


def test_every_decorator_form_returns_the_function() -> None:
    """Decorators work with and without parentheses and give the function back unchanged."""
    route = Router()

    def f(p: Any, ctx: Any) -> None: ...

    def g(p: Any, ctx: Any) -> None: ...

    def h(p: Any, ctx: Any) -> None: ...

    def i(p: Any, ctx: Any) -> None: ...

    def j(p: Any, ctx: Any) -> None: ...

    def k(exc: Exception, ctx: Any) -> None: ...

    assert route.chatbot(f) is f
    assert route.card_callback(ack="receipt")(g) is g
    assert route.event("user_add_org")(h) is h
    assert route.event()(i) is i
    assert route.callback("/v1.0/graph/api/invoke")(j) is j
    assert route.error(k) is k
    kinds = {(r.kind, r.topic, r.event_type, r.ack) for r in route.routes}
    assert kinds == {
        (RouteKind.CHATBOT, Topic.CHATBOT, None, "after"),
        (RouteKind.CARD_CALLBACK, Topic.CARD_CALLBACK, None, "receipt"),
        (RouteKind.EVENT, "*", "user_add_org", "after"),
        (RouteKind.EVENT, "*", None, "after"),
        (RouteKind.CALLBACK, "/v1.0/graph/api/invoke", None, "after"),
    }


def test_bare_event_and_chatbot_with_parentheses() -> None:
    route = Router()

    @route.event
    def every(ev: Any, ctx: Any) -> None: ...

    @route.chatbot()
    def bot(msg: Any, ctx: Any) -> None: ...

    assert [r.event_type for r in route.routes if r.kind == RouteKind.EVENT] == [None]
    assert route.route_for(chatbot_frame()).handler is bot  # type: ignore[union-attr]


def test_subscriptions() -> None:
    """EVENT "*" once when any event handler exists; one CALLBACK per topic."""
    route = Router()
    assert route.subscriptions() == []
    route.event("a")(lambda e, c: None)
    route.event("b")(lambda e, c: None)
    route.chatbot(lambda m, c: None)
    route.callback("/custom")(lambda d, c: None)
    assert route.subscriptions() == [
        {"type": "EVENT", "topic": "*"},
        {"type": "CALLBACK", "topic": "/custom"},
        {"type": "CALLBACK", "topic": Topic.CHATBOT},
    ]


@pytest.mark.parametrize(
    "register",
    [
        lambda r: r.chatbot(lambda m, c: None),
        lambda r: r.callback(Topic.CHATBOT)(lambda m, c: None),
    ],
)
def test_duplicate_topic_is_a_configuration_error(register: Any) -> None:
    route = Router()
    route.chatbot(lambda m, c: None)
    with pytest.raises(ConfigurationError, match="already has a handler"):
        register(route)


def test_other_duplicates_and_bad_arguments() -> None:
    route = Router()
    route.event("x")(lambda e, c: None)
    route.event()(lambda e, c: None)
    route.error(lambda e, c: None)
    with pytest.raises(ConfigurationError):
        route.event("x")(lambda e, c: None)
    with pytest.raises(ConfigurationError):
        route.event()(lambda e, c: None)
    with pytest.raises(ConfigurationError):
        route.error(lambda e, c: None)
    with pytest.raises(ConfigurationError):
        route.chatbot(ack="later")
    with pytest.raises(ConfigurationError):
        route.callback("")
    with pytest.raises(ConfigurationError):
        route.event("")


# -- dispatch and return values -----------------------------------------------------------


@pytest.mark.parametrize(
    "result, expected",
    [
        (None, {"response": None}),
        ("text", {"response": "text"}),
        ({"a": 1}, {"response": {"a": 1}}),
    ],
)
def test_chatbot_return_values(result: Any, expected: Dict[str, Any]) -> None:
    route = Router()
    route.chatbot(lambda msg, ctx: result)
    ack = route.dispatch(chatbot_frame())
    assert (ack.code, ack.message_id, data(ack)) == (200, "m-1", expected)


def test_handler_gets_typed_payload_and_bound_context() -> None:
    seen: Dict[str, Any] = {}
    route = Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: Context) -> None:
        seen.update(text=msg.text, mid=ctx.message_id, message=ctx.message, frame=ctx.frame)

    frame = chatbot_frame(" hello ")
    route.dispatch(frame)
    assert seen["text"] == "hello" and seen["mid"] == "m-1"
    assert seen["message"].msg_id == "msg-1" and seen["frame"] is frame


def test_one_argument_handlers_are_allowed() -> None:
    route = Router()
    route.callback("/raw")(lambda d: {"doubled": d["x"] * 2})
    assert data(route.dispatch(callback_frame("/raw", {"x": 2}))) == {"response": {"doubled": 4}}


def test_event_acks() -> None:
    """Events: SUCCESS by default; a str becomes the message; dict values are merged."""
    route = Router()
    route.event("a")(lambda ev, ctx: None)
    route.event("b")(lambda ev, ctx: "noted")
    route.event("c")(lambda ev, ctx: {"message": "custom"})
    assert data(route.dispatch(event_frame("a", {}))) == {"status": "SUCCESS", "message": "success"}
    assert data(route.dispatch(event_frame("b", {})))["message"] == "noted"
    assert data(route.dispatch(event_frame("c", {}))) == {"status": "SUCCESS", "message": "custom"}


def test_specific_event_handler_wins_and_unhandled_events_are_acked() -> None:
    route = Router()
    got = []
    route.event("user_add_org")(lambda ev, ctx: got.append(("specific", ev.data)))
    assert route.dispatch(event_frame("other", {})).code == 200  # no handler: acked, ignored
    route.event()(lambda ev, ctx: got.append(("any", ev.event_type)))
    route.dispatch(event_frame("user_add_org", {"userId": ["u"]}))
    route.dispatch(event_frame("chat_update_title", {}))
    assert got == [("specific", {"userId": ["u"]}), ("any", "chat_update_title")]


def test_card_callback_response_is_rendered() -> None:
    route = Router()

    @route.card_callback
    def on_click(cb: dingsync.CardCallback, ctx: Context) -> CardResponse:
        return CardResponse(card_data={"action": cb.params["action"], "count": 3})

    response = data(route.dispatch(card_frame()))["response"]
    assert response["cardData"] == {"cardParamMap": {"action": "like", "count": "3"}}
    assert response["cardUpdateOptions"] == {
        "updateCardDataByKey": True,
        "updatePrivateDataByKey": True,
    }


def test_raw_callback_gets_the_decoded_data() -> None:
    route = Router()
    route.callback("/v1.0/graph/api/invoke")(lambda d, ctx: {"echo": d["requestLine"]["uri"]})
    frame = callback_frame("/v1.0/graph/api/invoke", {"requestLine": {"uri": "/v1/x"}})
    assert data(route.dispatch(frame)) == {"response": {"echo": "/v1/x"}}


def test_returned_ack_passes_through_with_the_frame_message_id() -> None:
    route = Router()
    route.chatbot(lambda m, c: Ack.error("ignored", 503, "busy", {"x": 1}))
    ack = route.dispatch(chatbot_frame(mid="m-9"))
    assert (ack.message_id, ack.code, ack.message, data(ack)) == ("m-9", 503, "busy", {"x": 1})


def test_exception_is_logged_with_the_message_id_and_acked_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    route = Router()
    route.chatbot(lambda m, c: 1 / 0)
    route.event("e")(lambda ev, c: {}["missing"])
    with caplog.at_level(logging.ERROR, logger="dingsync"):
        ack = route.dispatch(chatbot_frame(mid="boom-1"))
        event_ack = route.dispatch(event_frame("e", {}, mid="boom-2"))
    assert ack.code == 500 and data(ack) == {"response": None}
    assert "ZeroDivisionError" in ack.message
    assert event_ack.code == 500 and data(event_ack)["status"] == "LATER"
    records = [r for r in caplog.records if r.exc_info]
    assert [r.message_id for r in records] == ["boom-1", "boom-2"]  # type: ignore[attr-defined]
    assert "boom-1" in records[0].getMessage()


def test_bad_return_type_is_a_handler_error() -> None:
    route = Router()
    route.chatbot(lambda m, c: {1, 2})
    assert route.dispatch(chatbot_frame()).code == 500


def test_error_hook_sees_the_exception_first_and_may_override() -> None:
    route = Router()
    seen = []
    route.chatbot(lambda m, c: (_ for _ in ()).throw(KeyError("k")))

    @route.error
    def on_error(exc: Exception, ctx: Context) -> Optional[str]:
        seen.append((type(exc).__name__, ctx.message_id))
        return "handled by hook" if isinstance(exc, KeyError) else None

    ack = route.dispatch(chatbot_frame(mid="x-1"))
    assert seen == [("KeyError", "x-1")]
    assert ack.code == 200 and data(ack) == {"response": "handled by hook"}


def test_error_hook_returning_none_or_raising_keeps_the_500() -> None:
    route = Router()
    route.chatbot(lambda m, c: 1 / 0)
    route.error(lambda exc, ctx: 1 / 0)
    assert route.dispatch(chatbot_frame()).code == 500


def test_unknown_topic_and_system_frames_are_404() -> None:
    route = Router()
    route.chatbot(lambda m, c: None)
    assert route.dispatch(callback_frame("/unknown", {})).code == 404
    ping = Frame.from_dict({"type": "SYSTEM", "headers": {"messageId": "p", "topic": "ping"}})
    assert route.dispatch(ping).code == 404
    assert route.dispatch(event_frame("x", {})).code == 404  # no event handlers at all


def test_malformed_payload_is_400_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    route = Router()
    called = []
    route.chatbot(lambda m, c: called.append(m))
    route.event()(lambda e, c: called.append(e))
    with caplog.at_level(logging.WARNING, logger="dingsync"):
        missing_msg_id = callback_frame(Topic.CHATBOT, {"msgtype": "text", "text": {}})
        not_json = Frame.from_dict(
            {"type": "CALLBACK", "headers": {"messageId": "m", "topic": Topic.CHATBOT}, "data": "{"}
        )
        no_event_type = Frame.from_dict(
            {"type": "EVENT", "headers": {"messageId": "e", "topic": "*"}, "data": "{}"}
        )
        for frame in (missing_msg_id, not_json, no_event_type):
            ack = route.dispatch(frame)
            assert ack.code == 400
    assert called == []
    assert any("malformed payload" in r.getMessage() for r in caplog.records)


def test_receipt_route_dispatch_returns_the_receipt_ack_and_still_runs() -> None:
    route = Router()
    ran = []
    route.chatbot(ack=AckPolicy.RECEIPT)(lambda m, c: ran.append(1) or "ignored")
    ack = route.dispatch(chatbot_frame())
    assert ran == [1] and data(ack) == {"response": None}
    assert route.route_for(chatbot_frame()).ack == "receipt"  # type: ignore[union-attr]


def test_dedupe_keys() -> None:
    """Chatbot messages are known by msgId, everything else by messageId."""
    route = Router()
    route.chatbot(lambda m, c: None)
    route.event()(lambda e, c: None)
    bot = chatbot_frame(mid="m-1")
    bot_route = route.route_for(bot)
    assert bot_route is not None
    assert bot_route.dedupe_key(bot, bot_route.decode(bot)) == "msg:msg-1"
    ev = event_frame("x", {}, mid="e-7")
    ev_route = route.route_for(ev)
    assert ev_route is not None
    assert ev_route.dedupe_key(ev, ev_route.decode(ev)) == "mid:e-7"


def test_dispatch_with_a_test_context_records_replies() -> None:
    route = Router()
    route.chatbot(lambda m, ctx: ctx.reply_text(f"echo {m.text}"))
    ctx = Context.for_testing()
    frame = chatbot_frame("ping", sessionWebhook="https://example.invalid/s?session=t")
    assert route.dispatch(frame, ctx).code == 200
    assert ctx.replies == [{"msgtype": "text", "text": {"content": "echo ping"}}]
