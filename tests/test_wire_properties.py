"""Properties of the wire layer: round trips hold, and no input raises anything but ProtocolError."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dingsync.errors import ProtocolError
from dingsync.frames import Ack, Frame, Headers
from dingsync.models import (
    AtUser,
    CardCallback,
    ChatbotMessage,
    Event,
    FileContent,
    PictureContent,
    RichTextContent,
    RichTextItem,
    TextContent,
)

PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(max_size=20)
opt_text = st.none() | text
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=10,
)
# Extra keys must not collide with the fields a model knows, or they would be read as such.
extra_keys = st.text(min_size=1, max_size=8).map(lambda s: "x_" + s)
extras = st.dictionaries(extra_keys, json_values, max_size=3)
string_extras = st.dictionaries(extra_keys, text, max_size=3)
moments = st.none() | st.integers(min_value=0, max_value=4_102_444_800_000).map(
    lambda ms: datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
)

headers = st.builds(
    Headers,
    message_id=st.text(min_size=1, max_size=20),
    topic=text,
    content_type=text,
    time=opt_text,
    app_id=opt_text,
    connection_id=opt_text,
    event_id=opt_text,
    event_type=opt_text,
    event_born_time=opt_text,
    event_corp_id=opt_text,
    event_unified_app_id=opt_text,
    extra=string_extras,
)
frames = st.builds(
    Frame,
    type=st.sampled_from(["SYSTEM", "EVENT", "CALLBACK", "FUTURE"]),
    headers=headers,
    data=json_values.map(json.dumps),
    spec_version=st.none() | st.just("1.0"),
    extra=extras,
)
acks = st.builds(
    Ack,
    message_id=text,
    code=st.integers(min_value=100, max_value=599),
    message=text,
    data=json_values.map(json.dumps),
    content_type=text,
)
contents = (
    st.builds(TextContent, content=text, extra=extras)
    | st.builds(
        PictureContent, download_code=opt_text, picture_download_code=opt_text, extra=extras
    )
    | st.builds(
        RichTextContent,
        items=st.lists(
            st.builds(RichTextItem, text=opt_text, type=opt_text, download_code=opt_text),
            max_size=3,
        ).map(tuple),
    )
    | st.builds(
        FileContent, download_code=opt_text, file_name=opt_text, space_id=opt_text, file_id=opt_text
    )
)


@st.composite
def chatbot_messages(draw: Callable[..., Any]) -> ChatbotMessage:
    content = draw(contents)
    msgtype = {
        TextContent: "text",
        PictureContent: "picture",
        RichTextContent: "richText",
        FileContent: "file",
    }[type(content)]
    return ChatbotMessage(
        msg_id=draw(text),
        msgtype=msgtype,
        content=content,
        conversation_id=draw(opt_text),
        conversation_type=draw(st.none() | st.sampled_from(["1", "2"])),
        sender_staff_id=draw(opt_text),
        sender_nick=draw(opt_text),
        is_admin=draw(st.none() | st.booleans()),
        at_users=tuple(
            draw(st.lists(st.builds(AtUser, dingtalk_id=opt_text, staff_id=opt_text), max_size=2))
        ),
        session_webhook=draw(opt_text),
        session_webhook_expires_at=draw(moments),
        created_at=draw(moments),
        extra=draw(extras),
    )


card_callbacks = st.builds(
    CardCallback,
    out_track_id=text,
    user_id=opt_text,
    user_id_type=st.none() | st.integers(min_value=0, max_value=3),
    content=st.none() | st.dictionaries(text, json_values, max_size=3),
    value=st.none() | st.dictionaries(text, json_values, max_size=3),
    extension=st.none() | st.dictionaries(text, json_values, max_size=3),
    extra=extras,
)
events = st.builds(
    Event,
    event_type=st.text(min_size=1, max_size=10),
    event_id=opt_text,
    corp_id=opt_text,
    born_at=moments,
    data=st.dictionaries(text, json_values, max_size=3),
)


@PROFILE
@given(frames)
def test_frame_round_trip(frame: Frame) -> None:
    """from_wire(to_wire(frame)) == frame."""
    assert Frame.from_wire(frame.to_wire()) == frame


@PROFILE
@given(acks)
def test_ack_round_trip(ack: Ack) -> None:
    """from_wire(to_wire(ack)) == ack."""
    assert Ack.from_wire(ack.to_wire()) == ack


@PROFILE
@given(chatbot_messages())
def test_chatbot_message_round_trip(msg: ChatbotMessage) -> None:
    """A chatbot message survives encoding to its wire data and back, through JSON."""
    assert ChatbotMessage.from_wire(json.loads(json.dumps(msg.to_wire()))) == msg


@PROFILE
@given(card_callbacks)
def test_card_callback_round_trip(cb: CardCallback) -> None:
    """A card callback survives the triple encoding."""
    assert CardCallback.from_wire(json.loads(json.dumps(cb.to_wire()))) == cb


@PROFILE
@given(events)
def test_event_round_trip(event: Event) -> None:
    """An event survives being carried by a frame."""
    assert Event.from_frame(Frame.from_wire(event.to_frame("m").to_wire())) == event


def _only_protocol_errors(call: Callable[[], object]) -> None:
    try:
        call()
    except ProtocolError:
        pass


@PROFILE
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_protocol_error(raw: bytes) -> None:
    """Any bytes from the socket either decode or raise ProtocolError."""
    _only_protocol_errors(lambda: Frame.from_wire(raw))


@PROFILE
@given(json_values)
def test_arbitrary_json_never_raises_anything_but_protocol_error(value: Any) -> None:
    """Any JSON, as a frame, as a chatbot payload, as a card callback or as an ack."""
    _only_protocol_errors(lambda: Frame.from_wire(json.dumps(value)))
    _only_protocol_errors(lambda: ChatbotMessage.from_wire(value))
    _only_protocol_errors(lambda: CardCallback.from_wire(value))
    _only_protocol_errors(lambda: Ack.from_wire(json.dumps(value)))


frame_like = st.fixed_dictionaries(
    {"type": json_values | st.sampled_from(["EVENT", "CALLBACK"])},
    optional={
        "headers": json_values
        | st.dictionaries(
            st.sampled_from(["messageId", "topic", "time", "eventType", "eventBornTime"]),
            json_values,
        ),
        "data": json_values | json_values.map(json.dumps),
    },
)


@PROFILE
@given(frame_like)
def test_frame_shaped_garbage_never_raises_anything_but_protocol_error(
    value: dict[str, Any],
) -> None:
    """Frames with the right keys and wrong types still fail only with ProtocolError."""

    def decode() -> None:
        frame = Frame.from_wire(json.dumps(value))
        frame.json()
        Event.from_frame(frame)

    _only_protocol_errors(decode)


chatbot_like = st.fixed_dictionaries(
    {
        "msgId": json_values | text,
        "msgtype": st.sampled_from(["text", "picture", "richText", "audio", "video", "file", "x"]),
    },
    optional={
        "text": json_values,
        "content": json_values,
        "atUsers": json_values,
        "createAt": json_values,
        "sessionWebhookExpiredTime": json_values | st.integers(),
        "conversationType": json_values,
        "isAdmin": json_values,
    },
)


@PROFILE
@given(chatbot_like)
def test_chatbot_shaped_garbage_never_raises_anything_but_protocol_error(
    value: dict[str, Any],
) -> None:
    """Chatbot payloads with the right keys and wrong types fail only with ProtocolError."""

    def decode() -> None:
        msg = ChatbotMessage.from_wire(value)
        msg.text  # noqa: B018 - the properties must not raise either
        msg.attachments  # noqa: B018

    _only_protocol_errors(decode)


def _outcome(decode: Callable[[str], Any], text: str) -> Any:
    try:
        return ("ok", decode(text))
    except ValueError:
        return ("error", None)


@PROFILE
@given(
    json_values,
    st.sampled_from(["", " ", "\n", "\t\r\n "]),
    st.sampled_from(["", " ", "\n", " x", "]", "{}"]),
)
def test_fast_json_decode_agrees_with_json_loads(value: Any, before: str, after: str) -> None:
    """The frame decoder's shortcut around json.loads accepts and rejects exactly what
    json.loads does, surrounding whitespace and trailing garbage included."""
    from dingsync.frames import _loads

    text = before + json.dumps(value) + after
    assert _outcome(_loads, text) == _outcome(json.loads, text)


@PROFILE
@given(st.text(max_size=40))
def test_fast_json_decode_agrees_on_arbitrary_text(text: str) -> None:
    from dingsync.frames import _loads

    assert _outcome(_loads, text) == _outcome(json.loads, text)
