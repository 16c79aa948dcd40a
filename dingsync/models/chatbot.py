"""Chatbot messages: the ``data`` of topic ``/v1.0/im/bot/messages/get`` (protocol.md §9.1)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple, Type, TypeVar, Union, cast

import attrs

from ..errors import ProtocolError
from ._fields import (
    datetime_to_ms,
    get_bool,
    get_int,
    get_str,
    ms_to_datetime,
    require_mapping,
    rest,
)

__all__ = [
    "ChatbotMessage",
    "AtUser",
    "TextContent",
    "PictureContent",
    "RichTextContent",
    "RichTextItem",
    "AudioContent",
    "VideoContent",
    "FileContent",
    "UnknownContent",
    "Attachment",
    "MessageContent",
]


class _StringFields:
    """``from_wire``/``to_wire`` for payload parts made of optional string fields.

    A subclass lists its ``(wire name, attribute)`` pairs in ``_WIRE`` and has an ``extra``
    mapping for the fields it does not know, which survive a round trip.
    """

    _WIRE: ClassVar[Tuple[Tuple[str, str], ...]] = ()
    _REQUIRED: ClassVar[frozenset[str]] = frozenset()
    _KNOWN_WIRE: ClassVar[Optional[frozenset[str]]] = None  # per subclass, made on first use
    extra: Mapping[str, Any]

    @classmethod
    def from_wire(cls: Type[_P], obj: Any, prefix: str = "content") -> _P:
        obj = require_mapping(obj, prefix)
        values = {}
        for wire, attr in cls._WIRE:
            value = obj.get(wire)
            if value.__class__ is not str:  # None, a number or a wrong type: checked in full
                value = get_str(obj, wire, prefix, required=wire in cls._REQUIRED)
            values[attr] = value
        known = cls._known()
        extra = {} if obj.keys() <= known else rest(obj, known)
        build: Any = cls  # the attrs subclass defines the keyword arguments
        return cast(_P, build(**values, extra=extra))

    @classmethod
    def _known(cls) -> frozenset[str]:
        known = cls.__dict__.get("_KNOWN_WIRE")
        if known is None:
            known = frozenset(w for w, _ in cls._WIRE)
            cls._KNOWN_WIRE = known
        return known

    def to_wire(self) -> Dict[str, Any]:
        out = {w: getattr(self, a) for w, a in self._WIRE if getattr(self, a) is not None}
        return {**out, **self.extra}


_P = TypeVar("_P", bound=_StringFields)


@attrs.frozen(kw_only=True)
class TextContent(_StringFields):
    """``msgtype == "text"``: ``content`` is the raw text (in groups it starts with a space)."""

    _WIRE = (("content", "content"),)
    _REQUIRED = frozenset({"content"})

    content: str
    extra: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class PictureContent(_StringFields):
    """``msgtype == "picture"``."""

    _WIRE = (("pictureDownloadCode", "picture_download_code"), ("downloadCode", "download_code"))

    download_code: Optional[str] = None
    picture_download_code: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class RichTextItem(_StringFields):
    """One piece of a rich-text message: text, or a picture with a download code."""

    _WIRE = (
        ("text", "text"),
        ("type", "type"),
        ("downloadCode", "download_code"),
        ("pictureDownloadCode", "picture_download_code"),
    )

    text: Optional[str] = None
    type: Optional[str] = None
    download_code: Optional[str] = None
    picture_download_code: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class RichTextContent:
    """``msgtype == "richText"``: text and pictures in order."""

    items: Tuple[RichTextItem, ...] = ()
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_wire(cls, obj: Any, prefix: str = "content") -> RichTextContent:
        obj = require_mapping(obj, prefix)
        raw = obj.get("richText", [])
        if not isinstance(raw, list):
            raise ProtocolError(f"{prefix}.richText must be a list", field=f"{prefix}.richText")
        items = tuple(
            RichTextItem.from_wire(x, f"{prefix}.richText[{i}]") for i, x in enumerate(raw)
        )
        return cls(items=items, extra=rest(obj, frozenset({"richText"})))

    def to_wire(self) -> Dict[str, Any]:
        return {"richText": [item.to_wire() for item in self.items], **self.extra}


@attrs.frozen(kw_only=True)
class AudioContent(_StringFields):
    """``msgtype == "audio"``: ``recognition`` is DingTalk's speech-to-text."""

    _WIRE = (
        ("downloadCode", "download_code"),
        ("recognition", "recognition"),
        ("duration", "duration"),
    )

    download_code: Optional[str] = None
    recognition: Optional[str] = None
    duration: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class VideoContent(_StringFields):
    """``msgtype == "video"`` (``duration`` in seconds, as a string on the wire)."""

    _WIRE = (
        ("downloadCode", "download_code"),
        ("duration", "duration"),
        ("videoType", "video_type"),
    )

    download_code: Optional[str] = None
    duration: Optional[str] = None
    video_type: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class FileContent(_StringFields):
    """``msgtype == "file"``."""

    _WIRE = (
        ("spaceId", "space_id"),
        ("fileName", "file_name"),
        ("downloadCode", "download_code"),
        ("fileId", "file_id"),
    )

    download_code: Optional[str] = None
    file_name: Optional[str] = None
    space_id: Optional[str] = None
    file_id: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class UnknownContent:
    """``unknownMsgType`` or any msgtype this version does not know: the raw content is kept."""

    raw: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def description(self) -> Optional[str]:
        value = self.raw.get("unknownMsgType")
        return value if isinstance(value, str) else None

    def to_wire(self) -> Dict[str, Any]:
        return dict(self.raw)


MessageContent = Union[
    TextContent,
    PictureContent,
    RichTextContent,
    AudioContent,
    VideoContent,
    FileContent,
    UnknownContent,
]

_CONTENT_TYPES: Dict[str, Any] = {
    "picture": PictureContent,
    "richText": RichTextContent,
    "audio": AudioContent,
    "video": VideoContent,
    "file": FileContent,
}


@attrs.frozen(kw_only=True)
class Attachment:
    """A downloadable part of a message; pass ``download_code`` to ``api.robot.download``."""

    kind: str
    download_code: str
    file_name: Optional[str] = None


@attrs.frozen(kw_only=True)
class AtUser(_StringFields):
    _WIRE = (("dingtalkId", "dingtalk_id"), ("staffId", "staff_id"))

    dingtalk_id: Optional[str] = None
    staff_id: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)


# Wire name -> attribute of the plain string fields.
_STR_FIELDS = {
    "conversationId": "conversation_id",
    "conversationTitle": "conversation_title",
    "senderId": "sender_id",
    "senderStaffId": "sender_staff_id",
    "senderNick": "sender_nick",
    "senderCorpId": "sender_corp_id",
    "senderPlatform": "sender_platform",
    "chatbotCorpId": "chatbot_corp_id",
    "chatbotUserId": "chatbot_user_id",
    "robotCode": "robot_code",
    "sessionWebhook": "session_webhook",
    "openThreadId": "open_thread_id",
}
_STR_ITEMS = tuple(_STR_FIELDS.items())
_NO_AT_USERS: List[Any] = []  # never changed: only read when a message has no atUsers
_KNOWN = frozenset(
    {
        *_STR_FIELDS,
        "msgId",
        "msgtype",
        "text",
        "content",
        "conversationType",
        "isAdmin",
        "isInAtList",
        "atUsers",
        "sessionWebhookExpiredTime",
        "createAt",
    }
)


@attrs.frozen(kw_only=True)
class ChatbotMessage:
    """A message sent to the robot, in a 1:1 chat (``conversation_type == "1"``) or a group ("2").

    ``session_webhook`` is a credential (anyone holding it can post to the chat), so it is left
    out of ``repr()``.

    Example:
        >>> msg = ChatbotMessage.from_wire({"msgId": "m1", "msgtype": "text",
        ...     "text": {"content": " 1+1"}, "conversationType": "2"})
        >>> msg.text, msg.is_group
        ('1+1', True)
    """

    msg_id: str
    msgtype: str
    content: MessageContent
    conversation_id: Optional[str] = None
    conversation_type: Optional[str] = None
    conversation_title: Optional[str] = None
    sender_id: Optional[str] = None
    sender_staff_id: Optional[str] = None
    sender_nick: Optional[str] = None
    sender_corp_id: Optional[str] = None
    sender_platform: Optional[str] = None
    is_admin: Optional[bool] = None
    is_in_at_list: Optional[bool] = None
    at_users: Tuple[AtUser, ...] = ()
    chatbot_corp_id: Optional[str] = None
    chatbot_user_id: Optional[str] = None
    robot_code: Optional[str] = None
    session_webhook: Optional[str] = attrs.field(default=None, repr=False)
    session_webhook_expires_at: Optional[datetime] = None
    created_at: Optional[datetime] = None
    open_thread_id: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def is_group(self) -> bool:
        return self.conversation_type == "2"

    @property
    def text(self) -> str:
        """The message as plain text, trimmed: the text, the rich text's words, or the speech
        recognition of an audio message; ``""`` for kinds without text."""
        content = self.content
        if isinstance(content, TextContent):
            return content.content.strip()
        if isinstance(content, RichTextContent):
            return "".join(item.text or "" for item in content.items).strip()
        if isinstance(content, AudioContent):
            return (content.recognition or "").strip()
        return ""

    @property
    def attachments(self) -> Tuple[Attachment, ...]:
        """Every downloadable part, in order."""
        content = self.content
        if isinstance(content, RichTextContent):
            return tuple(
                Attachment(kind=item.type or "picture", download_code=item.download_code)
                for item in content.items
                if item.download_code
            )
        if isinstance(content, FileContent) and content.download_code:
            return (
                Attachment(
                    kind="file", download_code=content.download_code, file_name=content.file_name
                ),
            )
        if (
            isinstance(content, (PictureContent, AudioContent, VideoContent))
            and content.download_code
        ):
            return (Attachment(kind=self.msgtype, download_code=content.download_code),)
        return ()

    def session_webhook_valid(self, now: Optional[datetime] = None) -> bool:
        """Whether the session webhook can still be used (it expires, typically after 90 min)."""
        if not self.session_webhook:
            return False
        if self.session_webhook_expires_at is None:
            return True
        return (now or datetime.now(timezone.utc)) < self.session_webhook_expires_at

    @classmethod
    def from_wire(cls, obj: Any) -> ChatbotMessage:
        """Build from the decoded ``data`` of a chatbot frame.

        Raises:
            ProtocolError: a required field is missing or a field has the wrong type.
        """
        obj = require_mapping(obj, "data")
        get = obj.get
        # One pass, each field checked by its type only; the full readers (get_str ...) run
        # for anything unusual and raise the ProtocolError naming the field.
        msg_id = get("msgId")
        if msg_id.__class__ is not str or not msg_id:
            msg_id = get_str(obj, "msgId", "data", required=True)
        msgtype = get("msgtype")
        if msgtype.__class__ is not str or not msgtype:
            msgtype = get_str(obj, "msgtype", "data", required=True)
        assert msg_id is not None and msgtype is not None
        content: MessageContent
        if msgtype == "text":
            content = TextContent.from_wire(obj.get("text"), "data.text")
        elif msgtype in _CONTENT_TYPES:
            content = _CONTENT_TYPES[msgtype].from_wire(obj.get("content", {}), "data.content")
        else:
            raw = obj.get("content", {})
            content = UnknownContent(raw=require_mapping(raw, "data.content"))
        at_raw = get("atUsers", _NO_AT_USERS)
        if not isinstance(at_raw, list):
            raise ProtocolError("data.atUsers must be a list", field="data.atUsers")
        strings: Dict[str, Any] = {}
        for wire, attr in _STR_ITEMS:
            value = get(wire)
            if value is not None and value.__class__ is not str:
                value = get_str(obj, wire, "data")
            strings[attr] = value
        conversation_type = get("conversationType")
        if conversation_type is not None and conversation_type.__class__ is not str:
            conversation_type = get_str(obj, "conversationType", "data")
        is_admin = get("isAdmin")
        if is_admin is not None and is_admin.__class__ is not bool:
            is_admin = get_bool(obj, "isAdmin", "data")
        is_in_at_list = get("isInAtList")
        if is_in_at_list is not None and is_in_at_list.__class__ is not bool:
            is_in_at_list = get_bool(obj, "isInAtList", "data")
        at_users = (
            tuple(AtUser.from_wire(u, f"data.atUsers[{i}]") for i, u in enumerate(at_raw))
            if at_raw
            else ()
        )
        expires = get("sessionWebhookExpiredTime")
        if expires is not None and expires.__class__ is not int:
            expires = get_int(obj, "sessionWebhookExpiredTime", "data")
        expires_at = ms_to_datetime(expires)
        created = get("createAt")
        if created is not None and created.__class__ is not int:
            created = get_int(obj, "createAt", "data")
        return cls(
            msg_id=msg_id,
            msgtype=msgtype,
            content=content,
            conversation_type=conversation_type,
            is_admin=is_admin,
            is_in_at_list=is_in_at_list,
            at_users=at_users,
            session_webhook_expires_at=expires_at,
            created_at=ms_to_datetime(created),
            extra={} if obj.keys() <= _KNOWN else rest(obj, _KNOWN),
            **strings,
        )

    def to_wire(self) -> Dict[str, Any]:
        """The wire ``data`` object (what :meth:`from_wire` reads)."""
        out: Dict[str, Any] = {"msgId": self.msg_id, "msgtype": self.msgtype}
        if isinstance(self.content, TextContent):
            out["text"] = self.content.to_wire()
        else:
            out["content"] = self.content.to_wire()
        for wire, attr in _STR_FIELDS.items():
            value = getattr(self, attr)
            if value is not None:
                out[wire] = value
        optional = (
            ("conversationType", self.conversation_type),
            ("isAdmin", self.is_admin),
            ("isInAtList", self.is_in_at_list),
            ("sessionWebhookExpiredTime", datetime_to_ms(self.session_webhook_expires_at)),
            ("createAt", datetime_to_ms(self.created_at)),
        )
        out.update({k: v for k, v in optional if v is not None})
        if self.at_users:
            out["atUsers"] = [u.to_wire() for u in self.at_users]
        out.update(self.extra)
        return out
