"""Frames and messages for testing handlers offline: no emulator, no socket, no websockets.

Each builder returns what DingTalk would send (the same payloads the emulator pushes), already
parsed: a :class:`dingsync.Frame` for ``route.dispatch(frame, ctx)``, or the typed payload for
calling a handler function directly. Pair them with :meth:`dingsync.Context.for_testing`, which
records replies in ``ctx.replies`` instead of posting them.

Example:
    >>> import dingsync
    >>> from dingsync.testing import chatbot_frame
    >>> route = dingsync.Router()
    >>> @route.chatbot
    ... def echo(msg, ctx):
    ...     ctx.reply_text(f"you said: {msg.text}")
    >>> ctx = dingsync.Context.for_testing()
    >>> route.dispatch(chatbot_frame("hello"), ctx).code
    200
    >>> ctx.replies[0]["text"]["content"]
    'you said: hello'
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ..frames import Frame
from ..models import CardCallback, ChatbotMessage, Event
from . import payloads

__all__ = [
    "chatbot_frame",
    "chatbot_message",
    "event_frame",
    "event",
    "card_callback_frame",
    "card_callback",
    "callback_frame",
    "OFFLINE_SESSION_WEBHOOK",
]

#: The session webhook of built chatbot messages: valid for 90 minutes from ``createAt``, on a
#: host that never resolves (``.invalid``), so a reply that escapes a testing context fails
#: instead of reaching anyone.
OFFLINE_SESSION_WEBHOOK = "https://session.invalid/robot/sendBySession?session=offline-test"


def chatbot_frame(
    text: str = "hi",
    *,
    message_id: Optional[str] = None,
    group: bool = False,
    **fields: Any,
) -> Frame:
    """A chatbot-message frame (topic ``/v1.0/im/bot/messages/get``), as DingTalk pushes it.

    Args:
        text: the message text (``msgtype`` text; pass ``msgtype=`` and ``content=`` for others).
        message_id: the frame's ``messageId``; a fresh one when omitted.
        group: a group chat (``conversationType`` "2") instead of a 1:1 chat.
        fields: keyword arguments of :func:`dingsync.testing.payloads.chatbot_data`, such as
            ``sender_staff_id``, ``sender_nick``, ``conversation_id``, ``at_users``,
            ``session_webhook``, ``session_webhook_expired_time``, ``create_at``.

    Example:
        >>> f = chatbot_frame("1+1", group=True, sender_staff_id="u7")
        >>> f.topic, f.json()["conversationType"], f.json()["senderStaffId"]
        ('/v1.0/im/bot/messages/get', '2', 'u7')
    """
    fields.setdefault("session_webhook", OFFLINE_SESSION_WEBHOOK)
    if group:
        fields.setdefault("conversation_type", "2")
    data = payloads.chatbot_data(text, **fields)
    wire = payloads.frame("CALLBACK", payloads.CHATBOT_TOPIC, data, message_id=message_id)
    return Frame.from_dict(wire)


def chatbot_message(text: str = "hi", **fields: Any) -> ChatbotMessage:
    """The typed chatbot message of :func:`chatbot_frame` (same arguments but ``message_id``),
    for calling a handler function directly.

    Example:
        >>> msg = chatbot_message("hello", sender_nick="Li Lei")
        >>> msg.text, msg.sender_nick, msg.is_group
        ('hello', 'Li Lei', False)
    """
    return ChatbotMessage.from_wire(chatbot_frame(text, **fields).json())


def event_frame(
    event_type: str,
    data: Optional[Mapping[str, Any]] = None,
    *,
    message_id: Optional[str] = None,
    event_id: Optional[str] = None,
    corp_id: str = "dingtestcorp",
) -> Frame:
    """An EVENT frame of ``event_type`` (topic ``*``) carrying ``data``.

    Example:
        >>> f = event_frame("user_add_org", {"userId": ["u1"]}, event_id="e1")
        >>> f.type, f.headers.event_type, f.headers.event_id, f.json()
        ('EVENT', 'user_add_org', 'e1', {'userId': ['u1']})
    """
    headers = payloads.event_headers(event_type, event_id=event_id, corp_id=corp_id)
    wire = payloads.frame(
        "EVENT", payloads.EVENT_TOPIC, dict(data or {}), message_id=message_id, headers=headers
    )
    return Frame.from_dict(wire)


def event(event_type: str, data: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Event:
    """The typed :class:`dingsync.Event` of :func:`event_frame` (same arguments).

    Example:
        >>> event("user_add_org", {"userId": ["u1"]}).data
        {'userId': ['u1']}
    """
    return Event.from_frame(event_frame(event_type, data, **kwargs))


def card_callback_frame(
    out_track_id: str,
    params: Optional[Mapping[str, Any]] = None,
    *,
    message_id: Optional[str] = None,
    user_id: str = "user-1",
    **fields: Any,
) -> Frame:
    """A card-callback frame: ``user_id`` pressed a button of card ``out_track_id``, submitting
    ``params``. ``fields`` go to :func:`dingsync.testing.payloads.card_callback_data`.

    Example:
        >>> f = card_callback_frame("order-1", {"choice": "yes"})
        >>> f.topic
        '/v1.0/card/instances/callback'
    """
    data = payloads.card_callback_data(out_track_id, dict(params or {}), user_id=user_id, **fields)
    wire = payloads.frame("CALLBACK", payloads.CARD_CALLBACK_TOPIC, data, message_id=message_id)
    return Frame.from_dict(wire)


def card_callback(
    out_track_id: str, params: Optional[Mapping[str, Any]] = None, **kwargs: Any
) -> CardCallback:
    """The typed :class:`dingsync.CardCallback` of :func:`card_callback_frame` (same arguments).

    Example:
        >>> card_callback("order-1", {"choice": "yes"}).params
        {'choice': 'yes'}
    """
    return CardCallback.from_wire(card_callback_frame(out_track_id, params, **kwargs).json())


def callback_frame(
    topic: str, data: Mapping[str, Any], *, message_id: Optional[str] = None
) -> Frame:
    """A CALLBACK frame of any other topic, for ``@route.callback(topic)`` handlers.

    Example:
        >>> callback_frame("/v1.0/graph/api/invoke", {"k": 1}).json()
        {'k': 1}
    """
    return Frame.from_dict(payloads.frame("CALLBACK", topic, dict(data), message_id=message_id))
