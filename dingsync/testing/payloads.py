"""Builders of Stream wire payloads, as plain dicts, exactly as the DingTalk gateway sends them.

These are what :class:`~dingsync.testing.FakeDingTalk` pushes; tests may also use them directly, to
feed a router without a socket. Everything follows ``reference/protocol.md``: every header value is
a string, ``data`` is a JSON document encoded as a string, card callbacks encode ``content``,
``value`` and ``extension`` once more.

Example:
    >>> data = chatbot_data("hello", session_webhook="http://127.0.0.1:1/robot/sendBySession?session=x")
    >>> data["msgtype"], data["text"]["content"]
    ('text', 'hello')
    >>> f = frame("CALLBACK", CHATBOT_TOPIC, data, message_id="m1", time_ms=1)
    >>> sorted(f["headers"].items())[:2], isinstance(f["data"], str)
    ([('contentType', 'application/json'), ('messageId', 'm1')], True)
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
import uuid
from typing import Any, Dict, Mapping, Optional, Sequence, Union

__all__ = [
    "CHATBOT_TOPIC",
    "CARD_CALLBACK_TOPIC",
    "EVENT_TOPIC",
    "CHATBOT_MSGTYPES",
    "new_message_id",
    "new_system_message_id",
    "frame",
    "encode_frame",
    "chatbot_data",
    "default_content",
    "card_callback_data",
    "event_headers",
    "ping_data",
    "disconnect_data",
    "ack",
]

CHATBOT_TOPIC = "/v1.0/im/bot/messages/get"
CARD_CALLBACK_TOPIC = "/v1.0/card/instances/callback"
EVENT_TOPIC = (
    "*"  # DingTalk sends "*" on every EVENT frame; the Go SDK routes on it (protocol.md §2.2)
)
CHATBOT_MSGTYPES = ("text", "picture", "richText", "audio", "video", "file", "unknownMsgType")
CONTENT_TYPE = "application/json"

_counter = itertools.count(1)
_PREFIX = secrets.token_hex(4)


def new_message_id(now_ms: Optional[int] = None) -> str:
    """A CALLBACK/EVENT message id shaped like DingTalk's (``212ca9d7_974_1898c159aa6_1783b``).

    Unique within the process (a counter is part of it).
    """
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{_PREFIX}_{next(_counter):x}_{ms:x}_{secrets.randbelow(0xFFFFF):x}"


def new_system_message_id(now_ms: Optional[int] = None) -> str:
    """A SYSTEM message id shaped like DingTalk's (``c0a815dd1698551133918195d43``)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{_PREFIX}{ms}{next(_counter):06x}"


def _dumps(obj: Any) -> str:
    # The real gateway sends non-ASCII text raw (see the 测试群 sample), not \\u-escaped.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def frame(
    type_: str,
    topic: str,
    data: Union[Mapping[str, Any], str],
    *,
    message_id: Optional[str] = None,
    headers: Optional[Mapping[str, Any]] = None,
    time_ms: Optional[int] = None,
) -> Dict[str, Any]:
    """One server frame: ``specVersion``, ``type``, string-only ``headers``, double-encoded ``data``.

    Args:
        type_: ``"SYSTEM"``, ``"EVENT"`` or ``"CALLBACK"``.
        topic: the ``topic`` header.
        data: a mapping (JSON-encoded here) or an already encoded string.
        message_id: the ``messageId`` header; a fresh one when omitted.
        headers: extra headers; every value is turned into a string, as the wire requires.
        time_ms: the ``time`` header (epoch ms); now when omitted.

    Example:
        >>> f = frame("SYSTEM", "ping", {"opaque": "o-1"}, message_id="s1", time_ms=5)
        >>> f["headers"]["time"], f["data"]
        ('5', '{"opaque":"o-1"}')
    """
    ms = int(time.time() * 1000) if time_ms is None else time_ms
    if message_id is None:
        message_id = new_system_message_id(ms) if type_ == "SYSTEM" else new_message_id(ms)
    hdrs: Dict[str, str] = {
        "contentType": CONTENT_TYPE,
        "messageId": message_id,
        "time": str(ms),
        "topic": topic,
    }
    for name, value in (headers or {}).items():
        hdrs[name] = value if isinstance(value, str) else str(value)
    return {
        "specVersion": "1.0",
        "type": type_,
        "headers": dict(sorted(hdrs.items())),  # the real gateway sends them sorted by name
        "data": data if isinstance(data, str) else _dumps(data),
    }


def encode_frame(obj: Mapping[str, Any]) -> str:
    """Serialise a frame dict as the gateway does (compact, non-ASCII kept raw)."""
    return _dumps(obj)


def default_content(msgtype: str, text: str = "hi") -> Dict[str, Any]:
    """The ``content`` object of a non-text chatbot message, shaped as in DingTalk's samples.

    Download codes are fresh random strings. ``text`` becomes the audio recognition and the first
    paragraph of a richText message.

    Example:
        >>> sorted(default_content("file"))
        ['downloadCode', 'fileId', 'fileName', 'spaceId']
    """
    code = "dc" + secrets.token_hex(12)
    if msgtype == "picture":
        return {"pictureDownloadCode": "pdc" + secrets.token_hex(12), "downloadCode": code}
    if msgtype == "richText":
        return {
            "richText": [
                {"text": text},
                {
                    "pictureDownloadCode": "pdc" + secrets.token_hex(12),
                    "downloadCode": code,
                    "type": "picture",
                },
            ]
        }
    if msgtype == "audio":
        return {"duration": 4000, "downloadCode": code, "recognition": text}
    if msgtype == "video":
        return {"duration": "5", "videoType": "mp4", "downloadCode": code}
    if msgtype == "file":
        return {
            "spaceId": "223573",
            "fileName": "foobar.zip",
            "downloadCode": code,
            "fileId": "117848",
        }
    if msgtype == "unknownMsgType":
        return {"unknownMsgType": "用户发送了一条消息，机器人暂不支持接收。"}
    raise ValueError(f"no default content for msgtype {msgtype!r}; pass content=")


def _at_user(user: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    if isinstance(user, str):
        return {"dingtalkId": f"$:LWCP_v1:${user}", "staffId": user}
    return dict(user)


def chatbot_data(
    text: str = "hi",
    *,
    msgtype: str = "text",
    content: Optional[Mapping[str, Any]] = None,
    conversation_type: str = "1",
    conversation_id: Optional[str] = None,
    conversation_title: Optional[str] = None,
    sender_staff_id: str = "user-1",
    sender_nick: Optional[str] = None,
    sender_corp_id: str = "dingtestcorp",
    robot_code: str = "test-client-id",
    chatbot_user_id: str = "$:LWCP_v1:$bot",
    at_users: Sequence[Union[str, Mapping[str, Any]]] = (),
    is_admin: bool = False,
    session_webhook: str = "",
    session_webhook_expired_time: Optional[int] = None,
    create_at: Optional[int] = None,
    msg_id: Optional[str] = None,
    **extra_fields: Any,
) -> Dict[str, Any]:
    """The ``data`` object of a chatbot message (topic ``/v1.0/im/bot/messages/get``).

    ``text`` is used as-is: in a real group chat the content starts with a space (what is left
    after the @-mention), so pass ``" hi"`` to mimic that. For ``msgtype`` other than ``text`` the
    ``content`` object defaults to :func:`default_content`. ``extra_fields`` are merged last
    (e.g. ``senderPlatform="Win"``, ``openThreadId=...``).

    Example:
        >>> d = chatbot_data("x", conversation_type="2", at_users=["u2"])
        >>> d["conversationType"], d["isInAtList"], d["atUsers"][0]["staffId"]
        ('2', True, 'u2')
    """
    created = int(time.time() * 1000) if create_at is None else create_at
    is_group = conversation_type == "2"
    data: Dict[str, Any] = {
        "conversationId": conversation_id or ("cid" + secrets.token_urlsafe(12)),
        "atUsers": [_at_user(u) for u in at_users],
        "chatbotCorpId": sender_corp_id,
        "chatbotUserId": chatbot_user_id,
        "msgId": msg_id or ("msg" + secrets.token_urlsafe(16)),
        "senderNick": sender_nick if sender_nick is not None else f"Nick {sender_staff_id}",
        "isAdmin": is_admin,
        "senderStaffId": sender_staff_id,
        "sessionWebhookExpiredTime": (
            created + 5_400_000
            if session_webhook_expired_time is None
            else session_webhook_expired_time
        ),
        "createAt": created,
        "senderCorpId": sender_corp_id,
        "conversationType": conversation_type,
        "senderId": f"$:LWCP_v1:${sender_staff_id}",
        "sessionWebhook": session_webhook,
        "robotCode": robot_code,
        "msgtype": msgtype,
    }
    if is_group:
        data["conversationTitle"] = conversation_title or "测试群"
        data["isInAtList"] = True
    if msgtype == "text":
        data["text"] = dict(content) if content is not None else {"content": text}
    else:
        data["content"] = dict(content) if content is not None else default_content(msgtype, text)
    data.update(extra_fields)
    return data


def card_callback_data(
    out_track_id: str,
    params: Mapping[str, Any],
    *,
    user_id: str = "user-1",
    action_ids: Sequence[str] = ("action",),
    corp_id: str = "dingtestcorp",
    space_type: str = "im",
    space_id: Optional[str] = None,
    user_id_type: int = 1,
    extension: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """The ``data`` object of a card callback (topic ``/v1.0/card/instances/callback``).

    ``content`` and ``value`` are JSON strings of ``{"cardPrivateData": {"actionIds", "params"}}``
    and ``extension`` a JSON string too: together with ``data`` itself that is the triple encoding
    of protocol.md §2.7.

    Example:
        >>> d = card_callback_data("track-1", {"action": "like"})
        >>> json.loads(d["content"])["cardPrivateData"]["params"]
        {'action': 'like'}
    """
    private = _dumps({"cardPrivateData": {"actionIds": list(action_ids), "params": dict(params)}})
    return {
        "extension": _dumps(dict(extension or {})),
        "corpId": corp_id,
        "spaceType": space_type,
        "userIdType": user_id_type,
        "type": "actionCallback",
        "userId": user_id,
        "content": private,
        "spaceId": space_id or ("cid" + secrets.token_urlsafe(12)),
        "outTrackId": out_track_id,
        "value": private,
    }


def event_headers(
    event_type: str,
    *,
    event_id: Optional[str] = None,
    born_ms: Optional[int] = None,
    corp_id: str = "dingtestcorp",
    unified_app_id: Optional[str] = None,
) -> Dict[str, str]:
    """The EVENT-specific headers (all strings): eventId, eventBornTime, eventCorpId, eventType,
    eventUnifiedAppId.

    Example:
        >>> event_headers("user_add_org", event_id="e1", born_ms=7, unified_app_id="a")["eventBornTime"]
        '7'
    """
    born = int(time.time() * 1000) if born_ms is None else born_ms
    return {
        "eventId": event_id or uuid.uuid4().hex,
        "eventBornTime": str(born),
        "eventCorpId": corp_id,
        "eventType": event_type,
        "eventUnifiedAppId": unified_app_id or str(uuid.uuid4()),
    }


def ping_data(opaque: str) -> Dict[str, str]:
    """``data`` of a SYSTEM ping: only ``opaque``, which the client must echo."""
    return {"opaque": opaque}


def disconnect_data(reason: str = "persistent connection is timeout") -> Dict[str, str]:
    """``data`` of a SYSTEM disconnect, with the reason string seen on the real gateway."""
    return {"reason": reason}


def ack(
    message_id: str,
    data: Union[Mapping[str, Any], str, None] = None,
    *,
    code: int = 200,
    message: str = "OK",
) -> Dict[str, Any]:
    """A client ACK frame (protocol.md §3.1), for tests that play the client by hand.

    Example:
        >>> ack("m1", {"response": None})["data"]
        '{"response": null}'
    """
    encoded = data if isinstance(data, str) else json.dumps({} if data is None else dict(data))
    return {
        "code": code,
        "headers": {"messageId": message_id, "contentType": CONTENT_TYPE},
        "message": message,
        "data": encoded,
    }
