"""The Stream wire envelope: frames from the gateway and acks back to it. No I/O here.

A frame is a JSON text message::

    {"specVersion": "1.0", "type": "CALLBACK",
     "headers": {"topic": "...", "messageId": "...", "contentType": "application/json", ...},
     "data": "<a JSON document encoded as a string>"}

and an ack is ``{"code", "headers": {"messageId", "contentType"}, "message", "data": "<JSON str>"}``
(reference/protocol.md §2, §3). Every decoding error is a :class:`~dingsync.errors.ProtocolError`
naming the field, never a KeyError or TypeError.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any, Dict, Mapping, Optional, Union

import attrs

from .errors import ProtocolError

__all__ = [
    "Frame",
    "Headers",
    "Ack",
    "FrameType",
    "Topic",
    "decode_json_object",
    "dumps",
    "message_id_of",
]


class FrameType:
    """The frame types DingTalk sends (plain strings on the wire)."""

    SYSTEM = "SYSTEM"
    EVENT = "EVENT"
    CALLBACK = "CALLBACK"


class Topic:
    """Well-known topics."""

    PING = "ping"
    DISCONNECT = "disconnect"
    ALL_EVENTS = "*"
    CHATBOT = "/v1.0/im/bot/messages/get"
    CARD_CALLBACK = "/v1.0/card/instances/callback"
    GRAPH = "/v1.0/graph/api/invoke"


def dumps(obj: Any) -> str:
    """Serialise the way the gateway expects (compact, UTF-8 kept as is)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


_raw_decode = json.JSONDecoder().raw_decode


def _loads(text: str) -> Any:
    """``json.loads(text)``, faster for text without surrounding whitespace (every frame).

    ``json.loads`` runs two whitespace regexes around the decoder, twice per frame; this calls
    the decoder directly and hands anything unusual (whitespace, invalid JSON) to
    ``json.loads``, which accepts or rejects it with its own error.
    """
    try:
        value, end = _raw_decode(text)
    except ValueError:
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value


def decode_json_object(text: Any, field: str) -> Dict[str, Any]:
    """Decode ``text`` (a JSON string) into a dict, or raise ProtocolError naming ``field``."""
    if not isinstance(text, str):
        raise ProtocolError(
            f"{field} must be a JSON string, got {type(text).__name__}", field=field
        )
    try:
        value = _loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise ProtocolError(f"{field} is not valid JSON: {exc}", field=field) from None
    if not isinstance(value, dict):
        raise ProtocolError(
            f"{field} must decode to a JSON object, got {type(value).__name__}", field=field
        )
    return value


# Wire name -> attribute name of the headers DingTalk documents (protocol.md §2.2).
_HEADER_FIELDS = {
    "messageId": "message_id",
    "topic": "topic",
    "contentType": "content_type",
    "time": "time",
    "appId": "app_id",
    "connectionId": "connection_id",
    "eventId": "event_id",
    "eventType": "event_type",
    "eventBornTime": "event_born_time",
    "eventCorpId": "event_corp_id",
    "eventUnifiedAppId": "event_unified_app_id",
}
_REQUIRED_HEADERS = ("messageId", "topic")


def _header_value(name: str, value: Any) -> str:
    # Go and Java SDKs require strings; a number is accepted (Postel) and kept as its text.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ProtocolError(
        f"headers.{name} must be a string, got {type(value).__name__}", field=f"headers.{name}"
    )


@attrs.frozen(kw_only=True)
class Headers:
    """Frame headers. All values are strings, as on the wire; unknown headers are kept in ``extra``.

    Example:
        >>> h = Headers.from_wire({"messageId": "m1", "topic": "ping", "x-new": "1"})
        >>> h.message_id, h.extra
        ('m1', {'x-new': '1'})
    """

    message_id: str
    topic: str
    content_type: str = "application/json"
    time: Optional[str] = None
    app_id: Optional[str] = None
    connection_id: Optional[str] = None
    event_id: Optional[str] = None
    event_type: Optional[str] = None
    event_born_time: Optional[str] = None
    event_corp_id: Optional[str] = None
    event_unified_app_id: Optional[str] = None
    extra: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def from_wire(cls, raw: Any) -> Headers:
        """Build from the ``headers`` object of a frame."""
        if not isinstance(raw, dict):
            raise ProtocolError(
                f"headers must be an object, got {type(raw).__name__}", field="headers"
            )
        if "messageId" not in raw or "topic" not in raw:
            for name in _REQUIRED_HEADERS:
                if name not in raw:
                    raise ProtocolError(f"headers.{name} is missing", field=f"headers.{name}")
        known: Dict[str, Any] = {}
        extra: Dict[str, str] = {}
        fields = _HEADER_FIELDS
        for name, value in raw.items():
            attr = fields.get(name)
            if value.__class__ is not str:  # the common case (a str) needs no further check
                if value is None and attr is not None and name not in _REQUIRED_HEADERS:
                    continue
                value = _header_value(name, value)
            if attr is None:
                extra[name] = value
            else:
                known[attr] = value
        if not known["message_id"]:
            raise ProtocolError("headers.messageId is empty", field="headers.messageId")
        return cls(extra=extra, **known)

    def to_wire(self) -> Dict[str, str]:
        out: Dict[str, str] = {}
        for wire, attr in _HEADER_FIELDS.items():
            value = getattr(self, attr)
            if value is not None:
                out[wire] = value
        out.update(self.extra)
        return out

    @property
    def time_ms(self) -> Optional[int]:
        """The ``time`` header as epoch milliseconds, when it is a number."""
        return (
            int(self.time)
            if self.time is not None and self.time.isascii() and self.time.isdigit()
            else None
        )


@attrs.frozen(kw_only=True)
class Frame:
    """One frame from the gateway. ``data`` stays the raw JSON text; :meth:`json` decodes it.

    Example:
        >>> f = Frame.from_wire('{"type":"SYSTEM","headers":{"messageId":"1","topic":"ping"},'
        ...                     '"data":"{\\\\"opaque\\\\":\\\\"x\\\\"}"}')
        >>> f.type, f.topic, f.json()
        ('SYSTEM', 'ping', {'opaque': 'x'})
    """

    type: str
    headers: Headers
    data: str = "{}"
    spec_version: Optional[str] = "1.0"
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def message_id(self) -> str:
        return self.headers.message_id

    @property
    def topic(self) -> str:
        return self.headers.topic

    @classmethod
    def from_wire(cls, raw: Union[str, bytes, bytearray]) -> Frame:
        """Decode one websocket text message.

        Raises:
            ProtocolError: the message is not valid UTF-8/JSON or lacks a required field.
        """
        if isinstance(raw, (bytes, bytearray)):
            try:
                raw = bytes(raw).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ProtocolError(f"frame is not valid UTF-8: {exc}", field="frame") from None
        if not isinstance(raw, str):
            raise ProtocolError(f"frame must be text, got {type(raw).__name__}", field="frame")
        try:
            obj = _loads(raw)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raise ProtocolError(f"frame is not valid JSON: {exc}", field="frame") from None
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: Any) -> Frame:
        """Build from an already decoded frame object."""
        if not isinstance(obj, dict):
            raise ProtocolError(
                f"frame must be a JSON object, got {type(obj).__name__}", field="frame"
            )
        frame_type = obj.get("type")
        if not isinstance(frame_type, str) or not frame_type:
            raise ProtocolError("type is missing or not a string", field="type")
        headers = Headers.from_wire(obj.get("headers"))
        data = obj.get("data", "{}")
        if data.__class__ is not str:
            if data is None:
                data = "{}"
            elif not isinstance(data, str):
                raise ProtocolError(
                    f"data must be a JSON string, got {type(data).__name__}", field="data"
                )
        spec = obj.get("specVersion")
        if spec is not None and not isinstance(spec, str):
            raise ProtocolError("specVersion must be a string", field="specVersion")
        extra = (
            {k: v for k, v in obj.items() if k not in _FRAME_KEYS}
            if not obj.keys() <= _FRAME_KEYS
            else {}
        )
        return cls(type=frame_type, headers=headers, data=data, spec_version=spec, extra=extra)

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if self.spec_version is not None:
            out["specVersion"] = self.spec_version
        out["type"] = self.type
        out["headers"] = self.headers.to_wire()
        out["data"] = self.data
        out.update(self.extra)
        return out

    def to_wire(self) -> str:
        return dumps(self.to_dict())

    def json(self) -> Dict[str, Any]:
        """Decode ``data`` as a JSON object (raises ProtocolError naming ``data``)."""
        return decode_json_object(self.data, "data")


_FRAME_KEYS = frozenset({"specVersion", "type", "headers", "data"})


@attrs.frozen(kw_only=True)
class Ack:
    """The client's answer to a frame.

    Example:
        >>> Ack.ok("m1", {"response": None}).to_wire()
        '{"code":200,"headers":{"messageId":"m1","contentType":"application/json"},"message":"OK","data":"{\\\\"response\\\\":null}"}'
    """

    message_id: str
    code: int = 200
    message: str = "OK"
    data: str = "{}"
    content_type: str = "application/json"

    @classmethod
    def ok(cls, message_id: str, data: Any = None, *, message: str = "OK") -> Ack:
        """A 200 ack; ``data`` is serialised to the JSON string the protocol wants."""
        return cls(
            message_id=message_id,
            data=dumps(data) if not isinstance(data, str) else data,
            message=message,
        )

    @classmethod
    def error(cls, message_id: str, code: int, message: str, data: Any = None) -> Ack:
        return cls(
            message_id=message_id,
            code=code,
            message=message,
            data=dumps(data) if not isinstance(data, str) else data,
        )

    def to_dict(self) -> Dict[str, Any]:
        return {
            "code": self.code,
            "headers": {"messageId": self.message_id, "contentType": self.content_type},
            "message": self.message,
            "data": self.data,
        }

    def to_wire(self) -> str:
        code = self.code
        if code.__class__ is int:  # a bool or an int subclass takes the general path
            try:
                return _ACK_WIRE % (
                    code,
                    encode_basestring(self.message_id),
                    encode_basestring(self.content_type),
                    encode_basestring(self.message),
                    encode_basestring(self.data),
                )
            except TypeError:  # a field that is not a str: json.dumps decides
                pass
        return dumps(self.to_dict())

    @classmethod
    def from_wire(cls, raw: Union[str, bytes]) -> Ack:
        """Decode an ack (used by the emulator's strict checks and by tests)."""
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("ack is not valid UTF-8", field="ack") from None
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise ProtocolError(f"ack is not valid JSON: {exc}", field="ack") from None
        if not isinstance(obj, dict):
            raise ProtocolError("ack must be a JSON object", field="ack")
        code = obj.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            raise ProtocolError("code must be an integer", field="code")
        headers = obj.get("headers")
        if not isinstance(headers, dict) or not isinstance(headers.get("messageId"), str):
            raise ProtocolError("headers.messageId is missing", field="headers.messageId")
        content_type = headers.get("contentType", "application/json")
        if not isinstance(content_type, str):
            raise ProtocolError("headers.contentType must be a string", field="headers.contentType")
        message = obj.get("message", "")
        if not isinstance(message, str):
            raise ProtocolError("message must be a string", field="message")
        data = obj.get("data", "")
        if not isinstance(data, str):
            raise ProtocolError("data must be a JSON string", field="data")
        return cls(
            message_id=headers["messageId"],
            code=code,
            message=message,
            data=data,
            content_type=content_type,
        )


# What dumps(Ack.to_dict()) writes, as a template (encode_basestring is json.dumps for a str
# with ensure_ascii=False).
_ACK_WIRE = '{"code":%d,"headers":{"messageId":%s,"contentType":%s},"message":%s,"data":%s}'


def message_id_of(raw: Union[bytes, str]) -> Optional[str]:
    """The messageId of a frame that failed to decode, if one can be found (to answer 400).

    Example:
        >>> message_id_of(b'{"headers": {"messageId": "m1", "topic": 5}}')
        'm1'
    """
    try:
        # Strict UTF-8, as Frame.from_wire: json.loads(bytes) would let invalid bytes through
        # as lone surrogates, which no ack can carry.
        text = bytes(raw).decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        headers = json.loads(text).get("headers")
        mid = headers.get("messageId") if isinstance(headers, dict) else None
    except (ValueError, AttributeError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return mid if isinstance(mid, str) and mid else None
