"""Outgoing messages: one frozen value object per message type, validated when built.

Each message renders itself for every path that can carry it:

* :meth:`Message.to_webhook` -> the body for a session webhook or a custom group robot
  (``{"msgtype": "text", "text": {...}, "at": {...}}``, reference/openapi.md §4, §5.3). Only
  text, markdown, link, actionCard and feedCard exist there; the others raise
  :class:`~dingsync.errors.UnsupportedMessage`.
* :meth:`Message.to_openapi` -> ``(msgKey, msgParam)`` for the robot OpenAPI (§3.6), where
  ``msgParam`` is a JSON **string** whose values are all strings.
* :meth:`Message.to_work_notice` -> the snake_case ``msg`` object of work notifications (§6.1).

@-mentions exist only on the two webhook paths; the robot OpenAPI and work notifications raise
:class:`~dingsync.errors.MentionNotSupported` rather than send the text without them. Every send
path checks the size DingTalk takes before sending (:mod:`dingsync.limits`).

Example:
    >>> from dingsync import messages as m
    >>> m.Text("disk 91%", at_mobiles=["13800000000"]).to_webhook()["text"]
    {'content': 'disk 91% @13800000000'}
    >>> m.Markdown(title="t", text="**hi**").to_openapi()
    ('sampleMarkdown', '{"title":"t","text":"**hi**"}')
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple, Union

import attrs

from .errors import ConfigurationError, MentionNotSupported, UnsupportedMessage

__all__ = [
    "Message",
    "Text",
    "Markdown",
    "Link",
    "Button",
    "ActionCard",
    "FeedLink",
    "FeedCard",
    "Image",
    "File",
    "Audio",
    "Video",
    "as_message",
    "FILE_TYPES",
    "MAX_BUTTONS",
]

MAX_BUTTONS = 5
MAX_BUTTON_TITLE = 20
MAX_URL = 500
FILE_TYPES = ("xlsx", "pdf", "zip", "rar", "doc", "docx")


def _dumps(param: Dict[str, str]) -> str:
    return json.dumps(param, ensure_ascii=False, separators=(",", ":"))


def _required(_instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _optional_str(_instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigurationError(f"{attribute.name} must be a string, got {value!r}")


def _url(_instance: Any, attribute: Any, value: Any) -> None:
    _required(_instance, attribute, value)
    if len(value) > MAX_URL:
        raise ConfigurationError(
            f"{attribute.name} is {len(value)} chars; DingTalk allows {MAX_URL}"
        )


def _positive_int(_instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{attribute.name} must be a positive integer, got {value!r}")


def _ids(value: Any) -> Tuple[str, ...]:
    # a bare string would otherwise be split into one "id" per character
    if isinstance(value, str):
        raise ConfigurationError(f"expected a list of ids, got the single string {value!r}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item or any(ch.isspace() for ch in item):
            raise ConfigurationError(f"ids must be non-empty strings without spaces, got {item!r}")
    return items


class Message:
    """Base class of every outgoing message."""

    __slots__ = ()

    def to_webhook(self) -> Dict[str, Any]:
        """The JSON body for a session webhook or a custom group robot."""
        raise UnsupportedMessage(
            f"{type(self).__name__} cannot be sent through a webhook (only Text, Markdown, "
            "Link, ActionCard and FeedCard can); send it with ApiClient.robot instead"
        )

    def to_openapi(self) -> Tuple[str, str]:
        """``(msgKey, msgParam)`` for the robot OpenAPI; ``msgParam`` is a JSON string."""
        raise UnsupportedMessage(
            f"{type(self).__name__} has no robot OpenAPI form; use a webhook instead"
        )

    def to_work_notice(self) -> Dict[str, Any]:
        """The ``msg`` object of a work notification (snake_case keys)."""
        raise UnsupportedMessage(f"{type(self).__name__} cannot be sent as a work notification")

    def searchable_text(self) -> str:
        """Every visible text of the message (used for a custom robot's keyword check)."""
        return ""

    @property
    def has_mentions(self) -> bool:
        """True when the message @-mentions someone (only Text and Markdown can)."""
        return False

    def without_mentions(self) -> Message:
        """The message, mentioning nobody."""
        return self


def _with_mentions(text: str, user_ids: Sequence[str], mobiles: Sequence[str]) -> str:
    # DingTalk only highlights an @ when "@id" also appears in the text itself
    missing = [f"@{x}" for x in (*user_ids, *mobiles) if f"@{x}" not in text]
    return " ".join([text, *missing]) if missing else text


def _refuse_mentions(message: Any, path: str) -> None:
    if message.has_mentions:
        raise MentionNotSupported(
            f"{type(message).__name__} @-mentions (at_user_ids, at_mobiles, at_all) cannot go "
            f"through {path}: DingTalk has no mentions there. Mentions work through a custom "
            "robot's webhook (WebhookRobot; dingsync send with DINGTALK_WEBHOOK) and a session "
            "webhook (ctx.reply); or send message.without_mentions()"
        )


def _at_block(user_ids: Sequence[str], mobiles: Sequence[str], at_all: bool) -> Dict[str, Any]:
    return {"atUserIds": list(user_ids), "atMobiles": list(mobiles), "isAtAll": at_all}


@attrs.frozen
class Text(Message):
    """Plain text, optionally mentioning people (mentions work on webhooks only).

    Example:
        >>> Text("build failed", at_user_ids=["manager593"]).to_webhook()["at"]["atUserIds"]
        ['manager593']
    """

    content: str = attrs.field(validator=_required)
    at_user_ids: Tuple[str, ...] = attrs.field(default=(), converter=_ids, kw_only=True)
    at_mobiles: Tuple[str, ...] = attrs.field(default=(), converter=_ids, kw_only=True)
    at_all: bool = attrs.field(default=False, kw_only=True)

    def to_webhook(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {
            "msgtype": "text",
            "text": {"content": _with_mentions(self.content, self.at_user_ids, self.at_mobiles)},
        }
        if self.at_user_ids or self.at_mobiles or self.at_all:
            body["at"] = _at_block(self.at_user_ids, self.at_mobiles, self.at_all)
        return body

    def to_openapi(self) -> Tuple[str, str]:
        _refuse_mentions(self, "the robot OpenAPI")  # openapi.md §3.2
        return "sampleText", _dumps({"content": self.content})

    def to_work_notice(self) -> Dict[str, Any]:
        _refuse_mentions(self, "a work notification")
        return {"msgtype": "text", "text": {"content": self.content}}

    def searchable_text(self) -> str:
        return self.content

    @property
    def has_mentions(self) -> bool:
        return bool(self.at_user_ids or self.at_mobiles or self.at_all)

    def without_mentions(self) -> Text:
        """The same text, mentioning nobody.

        Example:
            >>> Text("hi", at_all=True).without_mentions().has_mentions
            False
        """
        return attrs.evolve(self, at_user_ids=(), at_mobiles=(), at_all=False)


@attrs.frozen
class Markdown(Message):
    """Markdown with a title (the preview shown in the chat list).

    Example:
        >>> Markdown("Nightly", "## all green").to_webhook()["msgtype"]
        'markdown'
    """

    title: str = attrs.field(validator=_required)
    text: str = attrs.field(validator=_required)
    at_user_ids: Tuple[str, ...] = attrs.field(default=(), converter=_ids, kw_only=True)
    at_mobiles: Tuple[str, ...] = attrs.field(default=(), converter=_ids, kw_only=True)
    at_all: bool = attrs.field(default=False, kw_only=True)

    def to_webhook(self) -> Dict[str, Any]:
        text = _with_mentions(self.text, self.at_user_ids, self.at_mobiles)
        body: Dict[str, Any] = {
            "msgtype": "markdown",
            "markdown": {"title": self.title, "text": text},
        }
        if self.at_user_ids or self.at_mobiles or self.at_all:
            body["at"] = _at_block(self.at_user_ids, self.at_mobiles, self.at_all)
        return body

    def to_openapi(self) -> Tuple[str, str]:
        _refuse_mentions(self, "the robot OpenAPI")
        return "sampleMarkdown", _dumps({"title": self.title, "text": self.text})

    def to_work_notice(self) -> Dict[str, Any]:
        _refuse_mentions(self, "a work notification")
        return {"msgtype": "markdown", "markdown": {"title": self.title, "text": self.text}}

    def searchable_text(self) -> str:
        return f"{self.title}\n{self.text}"

    @property
    def has_mentions(self) -> bool:
        return bool(self.at_user_ids or self.at_mobiles or self.at_all)

    def without_mentions(self) -> Markdown:
        """The same markdown, mentioning nobody.

        Example:
            >>> Markdown("t", "x", at_user_ids=["u1"]).without_mentions().at_user_ids
            ()
        """
        return attrs.evolve(self, at_user_ids=(), at_mobiles=(), at_all=False)


@attrs.frozen
class Link(Message):
    """A link preview. ``pic_url`` (a URL or a media_id) is required by the OpenAPI form.

    Example:
        >>> Link("Report", "Nightly numbers", "https://example.com/r").to_webhook()["link"]["title"]
        'Report'
    """

    title: str = attrs.field(validator=_required)
    text: str = attrs.field(validator=_required)
    message_url: str = attrs.field(validator=_url)
    pic_url: str = attrs.field(default="", validator=_optional_str)

    def to_webhook(self) -> Dict[str, Any]:
        link = {"title": self.title, "text": self.text, "messageUrl": self.message_url}
        if self.pic_url:
            link["picUrl"] = self.pic_url
        return {"msgtype": "link", "link": link}

    def _all_four(self) -> Dict[str, str]:
        if not self.pic_url:
            raise ConfigurationError("Link needs pic_url for the robot OpenAPI and work notices")
        return {
            "text": self.text,
            "title": self.title,
            "picUrl": self.pic_url,
            "messageUrl": self.message_url,
        }

    def to_openapi(self) -> Tuple[str, str]:
        return "sampleLink", _dumps(self._all_four())

    def to_work_notice(self) -> Dict[str, Any]:
        return {"msgtype": "link", "link": self._all_four()}

    def searchable_text(self) -> str:
        return f"{self.title}\n{self.text}"


def _button_title(_instance: Any, attribute: Any, value: Any) -> None:
    _required(_instance, attribute, value)
    if len(value) > MAX_BUTTON_TITLE:
        raise ConfigurationError(
            f"button title {value!r} is {len(value)} chars; DingTalk allows {MAX_BUTTON_TITLE}"
        )


@attrs.frozen
class Button:
    """One ActionCard button.

    Example:
        >>> Button("Open", "https://example.com").title
        'Open'
    """

    title: str = attrs.field(validator=_button_title)
    url: str = attrs.field(validator=_url)


def _buttons(value: Any) -> Tuple[Button, ...]:
    if isinstance(value, (Button, str)):
        value = [value]
    buttons = tuple(b if isinstance(b, Button) else Button(*b) for b in value)
    if not 1 <= len(buttons) <= MAX_BUTTONS:
        raise ConfigurationError(
            f"an ActionCard has 1 to {MAX_BUTTONS} buttons, got {len(buttons)}"
        )
    return buttons


@attrs.frozen
class ActionCard(Message):
    """A card with a markdown body and 1-5 buttons, stacked (``vertical``) or side by side.

    The OpenAPI maps 1 button to ``sampleActionCard``, 2-5 vertical ones to
    ``sampleActionCard2..5`` and 2 horizontal ones to ``sampleActionCard6``.

    Example:
        >>> card = ActionCard("Deploy?", "v1.2 is ready",
        ...                   buttons=[("Yes", "https://x/y"), ("No", "https://x/n")],
        ...                   orientation="horizontal")
        >>> card.to_openapi()[0]
        'sampleActionCard6'
    """

    title: str = attrs.field(validator=_required)
    text: str = attrs.field(validator=_required)
    buttons: Tuple[Button, ...] = attrs.field(converter=_buttons, kw_only=True)
    orientation: str = attrs.field(default="vertical", kw_only=True)

    @orientation.validator
    def _check_orientation(self, _attribute: Any, value: Any) -> None:
        if value not in ("vertical", "horizontal"):
            raise ConfigurationError(
                f"orientation must be 'vertical' or 'horizontal', got {value!r}"
            )
        if value == "horizontal" and len(self.buttons) < 2:
            raise ConfigurationError("a horizontal ActionCard needs at least 2 buttons")

    def to_webhook(self) -> Dict[str, Any]:
        card: Dict[str, Any] = {"title": self.title, "text": self.text}
        if len(self.buttons) == 1:
            card["singleTitle"] = self.buttons[0].title
            card["singleURL"] = self.buttons[0].url
        else:
            card["btns"] = [{"title": b.title, "actionURL": b.url} for b in self.buttons]
        card["btnOrientation"] = "1" if self.orientation == "horizontal" else "0"
        return {"msgtype": "actionCard", "actionCard": card}

    def to_openapi(self) -> Tuple[str, str]:
        param = {"title": self.title, "text": self.text}
        count = len(self.buttons)
        if count == 1:
            param["singleTitle"] = self.buttons[0].title
            param["singleURL"] = self.buttons[0].url
            return "sampleActionCard", _dumps(param)
        if self.orientation == "horizontal":
            if count != 2:
                raise UnsupportedMessage(
                    "the robot OpenAPI lays out exactly 2 buttons horizontally "
                    f"(sampleActionCard6); this card has {count}"
                )
            for i, b in enumerate(self.buttons, 1):
                param[f"buttonTitle{i}"] = b.title
                param[f"buttonUrl{i}"] = b.url
            return "sampleActionCard6", _dumps(param)
        for i, b in enumerate(self.buttons, 1):
            param[f"actionTitle{i}"] = b.title
            param[f"actionURL{i}"] = b.url
        return f"sampleActionCard{count}", _dumps(param)

    def to_work_notice(self) -> Dict[str, Any]:
        card: Dict[str, Any] = {"title": self.title, "markdown": self.text}
        if len(self.buttons) == 1:
            card["single_title"] = self.buttons[0].title
            card["single_url"] = self.buttons[0].url
        else:
            card["btn_orientation"] = "1" if self.orientation == "horizontal" else "0"
            card["btn_json_list"] = [{"title": b.title, "action_url": b.url} for b in self.buttons]
        return {"msgtype": "action_card", "action_card": card}

    def searchable_text(self) -> str:
        return "\n".join([self.title, self.text, *(b.title for b in self.buttons)])


@attrs.frozen
class FeedLink:
    """One entry of a :class:`FeedCard`."""

    title: str = attrs.field(validator=_required)
    message_url: str = attrs.field(validator=_url)
    pic_url: str = attrs.field(validator=_url)


def _feed_links(value: Iterable[Any]) -> Tuple[FeedLink, ...]:
    links = tuple(x if isinstance(x, FeedLink) else FeedLink(*x) for x in value)
    if not links:
        raise ConfigurationError("a FeedCard needs at least one link")
    return links


@attrs.frozen
class FeedCard(Message):
    """A list of linked headlines; webhooks only.

    Example:
        >>> FeedCard([("News", "https://x/1", "https://x/1.png")]).to_webhook()["msgtype"]
        'feedCard'
    """

    links: Tuple[FeedLink, ...] = attrs.field(converter=_feed_links)

    def to_webhook(self) -> Dict[str, Any]:
        links = [
            {"title": x.title, "messageURL": x.message_url, "picURL": x.pic_url} for x in self.links
        ]
        return {"msgtype": "feedCard", "feedCard": {"links": links}}

    def searchable_text(self) -> str:
        return "\n".join(x.title for x in self.links)


@attrs.frozen
class Image(Message):
    """A picture: a full URL or a media_id (``@lA...``) from ``api.media.upload``.

    Example:
        >>> Image("@lAabc").to_openapi()
        ('sampleImageMsg', '{"photoURL":"@lAabc"}')
    """

    photo_url: str = attrs.field(validator=_required)

    def to_openapi(self) -> Tuple[str, str]:
        return "sampleImageMsg", _dumps({"photoURL": self.photo_url})

    def to_work_notice(self) -> Dict[str, Any]:
        if not self.photo_url.startswith("@"):
            raise UnsupportedMessage("work notifications need an uploaded image (a media_id)")
        return {"msgtype": "image", "image": {"media_id": self.photo_url}}


def _file_type(instance: Any) -> str:
    return str(os.path.splitext(instance.file_name)[1]).lstrip(".").lower()


@attrs.frozen
class File(Message):
    """A file uploaded with ``api.media.upload(..., type="file")``.

    ``file_type`` defaults to the extension of ``file_name`` and must be one of
    xlsx, pdf, zip, rar, doc or docx.

    Example:
        >>> File("@lAfile", "report.pdf").to_openapi()[1]
        '{"mediaId":"@lAfile","fileName":"report.pdf","fileType":"pdf"}'
    """

    media_id: str = attrs.field(validator=_required)
    file_name: str = attrs.field(validator=_required)
    file_type: str = attrs.field(default=attrs.Factory(_file_type, takes_self=True), kw_only=True)

    @file_type.validator
    def _check_type(self, _attribute: Any, value: Any) -> None:
        if value not in FILE_TYPES:
            raise ConfigurationError(
                f"file_type must be one of {', '.join(FILE_TYPES)}, got {value!r}"
            )

    def to_openapi(self) -> Tuple[str, str]:
        param = {"mediaId": self.media_id, "fileName": self.file_name, "fileType": self.file_type}
        return "sampleFile", _dumps(param)

    def to_work_notice(self) -> Dict[str, Any]:
        return {"msgtype": "file", "file": {"media_id": self.media_id}}


@attrs.frozen
class Audio(Message):
    """A voice message (ogg/amr) with its duration in **milliseconds**.

    Example:
        >>> Audio("@lAvoice", duration_ms=3000).to_openapi()[1]
        '{"mediaId":"@lAvoice","duration":"3000"}'
    """

    media_id: str = attrs.field(validator=_required)
    duration_ms: int = attrs.field(validator=_positive_int)

    def to_openapi(self) -> Tuple[str, str]:
        return "sampleAudio", _dumps({"mediaId": self.media_id, "duration": str(self.duration_ms)})

    def to_work_notice(self) -> Dict[str, Any]:
        seconds = str(max(1, math.ceil(self.duration_ms / 1000)))
        return {"msgtype": "voice", "voice": {"media_id": self.media_id, "duration": seconds}}


@attrs.frozen
class Video(Message):
    """An mp4 video with a cover picture; ``duration`` in **seconds**.

    Example:
        >>> Video("@lAvid", "@lAcover", duration=12).to_openapi()[0]
        'sampleVideo'
    """

    video_media_id: str = attrs.field(validator=_required)
    pic_media_id: str = attrs.field(validator=_required)
    duration: int = attrs.field(validator=_positive_int)
    video_type: str = attrs.field(default="mp4", kw_only=True)
    width: Optional[int] = attrs.field(default=None, kw_only=True)
    height: Optional[int] = attrs.field(default=None, kw_only=True)

    def to_openapi(self) -> Tuple[str, str]:
        param = {
            "duration": str(self.duration),
            "videoMediaId": self.video_media_id,
            "videoType": self.video_type,
            "picMediaId": self.pic_media_id,
        }
        if self.width is not None:
            param["width"] = str(self.width)
        if self.height is not None:
            param["height"] = str(self.height)
        return "sampleVideo", _dumps(param)


MessageLike = Union[Message, str]


def as_message(obj: MessageLike) -> Message:
    """Turn a plain string into :class:`Text`; pass messages through.

    Example:
        >>> as_message("hello")
        Text(content='hello', at_user_ids=(), at_mobiles=(), at_all=False)

    Raises:
        ConfigurationError: ``obj`` is neither a string nor a :class:`Message`.
    """
    if isinstance(obj, Message):
        return obj
    if isinstance(obj, str):
        return Text(obj)
    raise ConfigurationError(
        f"expected a str or a dingsync.messages.Message, got {type(obj).__name__}"
    )
