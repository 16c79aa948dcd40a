"""The wire envelope against frames captured from the real gateway (protocol.md §2, §3)."""

from __future__ import annotations

import json

import pytest

from dingsync.errors import ProtocolError
from dingsync.frames import Ack, Frame, FrameType, Headers, Topic

# protocol.md §2.4: a real SYSTEM disconnect frame (dingtalk-stream-sdk-python issue #22).
REAL_DISCONNECT = (
    '{"specVersion":"1.0","type":"SYSTEM","headers":{"contentType":"application/json",'
    '"messageId":"c0a815dd1698551133918195d43","time":"1698551133918","topic":"disconnect"},'
    '"data":"{\\"reason\\":\\"persistent connection is timeout\\"}"}'
)

# protocol.md §2.9: the documented EVENT frame.
REAL_EVENT = {
    "specVersion": "1.0",
    "type": "EVENT",
    "headers": {
        "messageId": "213d841d_972_1898bb26334_70a7",
        "contentType": "application/json",
        "time": "1683533823336",
        "topic": "*",
        "eventId": "c7c7120f2c07419**ebdba0318c8",
        "eventBornTime": "1683533823336",
        "eventCorpId": "ding9f50b15bxxxx16741",
        "eventType": "user_add_org",
        "eventUnifiedAppId": "bbb381b6-f01xxxxx58daac",
    },
    "data": '{"timeStamp":"1685501863357","userId":["015xxxx227"]}',
}


def test_real_disconnect_frame_decodes_with_typed_headers() -> None:
    """A captured disconnect frame yields its type, topic, time and reason."""
    frame = Frame.from_wire(REAL_DISCONNECT)
    assert frame.type == FrameType.SYSTEM
    assert frame.topic == Topic.DISCONNECT
    assert frame.message_id == "c0a815dd1698551133918195d43"
    assert frame.headers.time_ms == 1698551133918
    assert frame.json() == {"reason": "persistent connection is timeout"}


def test_event_headers_are_mapped_and_written_back_unchanged() -> None:
    """Every documented event header survives decode and encode."""
    frame = Frame.from_dict(REAL_EVENT)
    assert frame.headers.event_type == "user_add_org"
    assert frame.headers.event_corp_id == "ding9f50b15bxxxx16741"
    assert frame.to_dict() == REAL_EVENT


def test_unknown_headers_and_top_level_keys_are_kept() -> None:
    """New server fields are kept, so a newer gateway does not break an older client."""
    raw = {
        "type": "CALLBACK",
        "time": 123,
        "headers": {"messageId": "m", "topic": "t", "x-trace": "abc"},
        "data": "{}",
    }
    frame = Frame.from_dict(raw)
    assert frame.headers.extra == {"x-trace": "abc"}
    assert frame.extra == {"time": 123}
    assert frame.to_dict()["headers"]["x-trace"] == "abc"
    assert frame.to_dict()["time"] == 123


def test_numeric_header_values_are_read_as_their_text() -> None:
    """A producer that sends ``time`` as a number is tolerated; the value is kept as text."""
    frame = Frame.from_dict(
        {"type": "EVENT", "headers": {"messageId": "m", "topic": "*", "time": 5}}
    )
    assert frame.headers.time == "5"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("not json", "frame"),
        (b"\xff\xfe", "frame"),
        ("[1, 2]", "frame"),
        ('{"headers": {"messageId": "m", "topic": "t"}}', "type"),
        ('{"type": 5, "headers": {"messageId": "m", "topic": "t"}}', "type"),
        ('{"type": "EVENT"}', "headers"),
        ('{"type": "EVENT", "headers": {"topic": "t"}}', "headers.messageId"),
        ('{"type": "EVENT", "headers": {"messageId": "m"}}', "headers.topic"),
        ('{"type": "EVENT", "headers": {"messageId": "", "topic": "t"}}', "headers.messageId"),
        ('{"type": "EVENT", "headers": {"messageId": ["m"], "topic": "t"}}', "headers.messageId"),
        ('{"type": "EVENT", "headers": {"messageId": "m", "topic": true}}', "headers.topic"),
        (
            '{"type": "EVENT", "headers": {"messageId": "m", "topic": "t"}, "data": {"a": 1}}',
            "data",
        ),
    ],
)
def test_malformed_frames_raise_protocol_error_naming_the_field(
    raw: str | bytes, field: str
) -> None:
    """Each malformed frame raises ProtocolError whose ``field`` says what to look at."""
    with pytest.raises(ProtocolError) as info:
        Frame.from_wire(raw)
    assert info.value.field == field
    assert field.split(".")[-1] in str(info.value)


def test_data_that_is_not_an_object_is_reported_when_decoded() -> None:
    """``data`` holding a JSON array decodes lazily to a ProtocolError naming ``data``."""
    frame = Frame.from_dict(
        {"type": "EVENT", "headers": {"messageId": "m", "topic": "*"}, "data": "[1]"}
    )
    with pytest.raises(ProtocolError) as info:
        frame.json()
    assert info.value.field == "data"


def test_ack_matches_the_documented_shape() -> None:
    """An ack has code, the two required headers, message and a JSON *string* as data."""
    wire = json.loads(Ack.ok("m-1", {"status": "SUCCESS", "message": "success"}).to_wire())
    assert wire == {
        "code": 200,
        "headers": {"messageId": "m-1", "contentType": "application/json"},
        "message": "OK",
        "data": '{"status":"SUCCESS","message":"success"}',
    }


def test_ack_round_trips_and_rejects_non_string_data() -> None:
    """Ack.from_wire reads what to_wire writes, and refuses a data object that is not a string."""
    ack = Ack.error("m-2", 500, "handler failed", {"status": "LATER"})
    assert Ack.from_wire(ack.to_wire()) == ack
    with pytest.raises(ProtocolError) as info:
        Ack.from_wire('{"code":200,"headers":{"messageId":"m"},"message":"OK","data":{}}')
    assert info.value.field == "data"


def test_headers_repr_carries_no_surprises() -> None:
    """Headers can be built directly and compare by value."""
    assert Headers(message_id="a", topic="b") == Headers.from_wire({"messageId": "a", "topic": "b"})


def test_deeply_nested_json_is_a_protocol_error() -> None:
    """json's RecursionError on absurd nesting is reported as malformed input, naming the field."""
    with pytest.raises(ProtocolError) as info:
        Frame.from_wire("[" * 100_000 + "]" * 100_000)
    assert info.value.field == "frame"
    frame = Frame.from_dict(
        {"type": "EVENT", "headers": {"messageId": "m", "topic": "*"}, "data": "[" * 100_000}
    )
    with pytest.raises(ProtocolError) as info:
        frame.json()
    assert info.value.field == "data"
