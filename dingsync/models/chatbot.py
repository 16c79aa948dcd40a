"""Chatbot messages: the ``data`` of topic ``/v1.0/im/bot/messages/get`` (protocol.md §9.1)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict, Mapping, Optional, Tuple, Union

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


@attrs.frozen(kw_only=True)
class TextContent:
    """``msgtype == "text"``: ``content`` is the raw text (in groups it starts with a space)."""

    content: str
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_wire(cls, obj: Any, prefix: str = "text") -> TextContent:
        obj = require_mapping(obj, prefix)
        content = get_str(obj, "content", prefix, required=True)
        assert content is not None
        return cls(content=content, extra=rest(obj, frozenset({"content"})))

    def to_wire(self) -> Dict[str, Any]:
        return {"content": self.content, **self.extra}


@attrs.frozen(kw_only=True)
class PictureContent:
    """``msgtype == "picture"``."""

    download_code: Optional[str] = None
    picture_download_code: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_wire(cls, obj: Any, prefix: str = "content") -> PictureContent:
        obj = require_mapping(obj, prefix)
        return cls(
            download_code=get_str(obj, "downloadCode", prefix),
            picture_download_code=get_str(obj, "pictureDownloadCode", prefix),
            extra=rest(obj, frozenset({"downloadCode", "pictureDownloadCode"})),
        )

    def to_wire(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if self.picture_download_code is not None:
            out["pictureDownloadCode"] = self.picture_download_code
        if self.download_code is not None:
            out["downloadCode"] = self.download_code
        return {**out, **self.extra}


@attrs.frozen(kw_only=True)
class RichTextItem:
    """One piece of a rich-text message: text, or a picture with a download code."""

    text: Optional[str] = None
    type: Optional[str] = None
    download_code: Optional[str] = None
    picture_download_code: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_wire(cls, obj: Any, prefix: str) -> RichTextItem:
        obj = require_mapping(obj, prefix)
        return cls(
            text=get_str(obj, "text", prefix),
            type=get_str(obj, "type", prefix),
            download_code=get_str(obj, "downloadCode", prefix),
            picture_download_code=get_str(obj, "pictureDownloadCode", prefix),
            extra=rest(obj, frozenset({"text", "type", "downloadCode", "pictureDownloadCode"})),
        )

    def to_wire(self) -> Dict[str, Any]:
        pairs = (
            ("text", self.text),
            ("type", self.type),
            ("downloadCode", self.download_code),
            ("pictureDownloadCode", self.picture_download_code),
        )
        return {**{k: v for k, v in pairs if v is not None}, **self.extra}


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
class AudioContent:
    """``msgtype == "audio"``: ``recognition`` is DingTalk's speech-to-text."""

    download_code: Optional[str] = None
    recognition: Optional[str] = None
    duration: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_wire(cls, obj: Any, prefix: str = "content") -> AudioContent:
        obj = require_mapping(obj, prefix)
        return cls(
            download_code=get_str(obj, "downloadCode", prefix),
            recognition=get_str(obj, "recognition", prefix),
            duration=get_str(obj, "duration", prefix),
            extra=rest(obj, frozenset({"downloadCode", "recognition", "duration"})),
        )

    def to_wire(self) -> Dict[str, Any]:
        pairs = (
            ("downloadCode", self.download_code),
            ("recognition", self.recognition),
            ("duration", self.duration),
        )
        return {**{k: v for k, v in pairs if v is not None}, **self.extra}


@attrs.frozen(kw_only=True)
class VideoContent:
    """``msgtype == "video"`` (``duration`` in seconds, as a string on the wire)."""

    download_code: Optional[str] = None
    duration: Optional[str] = None
    video_type: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_wire(cls, obj: Any, prefix: str = "content") -> VideoContent:
        obj = require_mapping(obj, prefix)
        return cls(
            download_code=get_str(obj, "downloadCode", prefix),
            duration=get_str(obj, "duration", prefix),
            video_type=get_str(obj, "videoType", prefix),
            extra=rest(obj, frozenset({"downloadCode", "duration", "videoType"})),
        )

    def to_wire(self) -> Dict[str, Any]:
        pairs = (
            ("downloadCode", self.download_code),
            ("duration", self.duration),
            ("videoType", self.video_type),
        )
        return {**{k: v for k, v in pairs if v is not None}, **self.extra}


@attrs.frozen(kw_only=True)
class FileContent:
    """``msgtype == "file"``."""

    download_code: Optional[str] = None
    file_name: Optional[str] = None
    space_id: Optional[str] = None
    file_id: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_wire(cls, obj: Any, prefix: str = "content") -> FileContent:
        obj = require_mapping(obj, prefix)
        return cls(
            download_code=get_str(obj, "downloadCode", prefix),
            file_name=get_str(obj, "fileName", prefix),
            space_id=get_str(obj, "spaceId", prefix),
            file_id=get_str(obj, "fileId", prefix),
            extra=rest(obj, frozenset({"downloadCode", "fileName", "spaceId", "fileId"})),
        )

    def to_wire(self) -> Dict[str, Any]:
        pairs = (
            ("spaceId", self.space_id),
            ("fileName", self.file_name),
            ("downloadCode", self.download_code),
            ("fileId", self.file_id),
        )
        return {**{k: v for k, v in pairs if v is not None}, **self.extra}


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
class AtUser:
    dingtalk_id: Optional[str] = None
    staff_id: Optional[str] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_wire(cls, obj: Any, prefix: str) -> AtUser:
        obj = require_mapping(obj, prefix)
        return cls(
            dingtalk_id=get_str(obj, "dingtalkId", prefix),
            staff_id=get_str(obj, "staffId", prefix),
            extra=rest(obj, frozenset({"dingtalkId", "staffId"})),
        )

    def to_wire(self) -> Dict[str, Any]:
        pairs = (("dingtalkId", self.dingtalk_id), ("staffId", self.staff_id))
        return {**{k: v for k, v in pairs if v is not None}, **self.extra}


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
        msg_id = get_str(obj, "msgId", "data", required=True)
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
        at_raw = obj.get("atUsers", [])
        if not isinstance(at_raw, list):
            raise ProtocolError("data.atUsers must be a list", field="data.atUsers")
        strings = {attr: get_str(obj, wire, "data") for wire, attr in _STR_FIELDS.items()}
        return cls(
            msg_id=msg_id,
            msgtype=msgtype,
            content=content,
            conversation_type=get_str(obj, "conversationType", "data"),
            is_admin=get_bool(obj, "isAdmin", "data"),
            is_in_at_list=get_bool(obj, "isInAtList", "data"),
            at_users=tuple(AtUser.from_wire(u, f"data.atUsers[{i}]") for i, u in enumerate(at_raw)),
            session_webhook_expires_at=ms_to_datetime(
                get_int(obj, "sessionWebhookExpiredTime", "data")
            ),
            created_at=ms_to_datetime(get_int(obj, "createAt", "data")),
            extra=rest(obj, _KNOWN),
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
