"""Replying to a chatbot message with a card: ``ctx.reply_card`` and ``ctx.reply_ai_card``.

A session webhook cannot carry cards (reference/openapi.md §4), so a card reply always goes
through the card OpenAPI (``ctx.api.cards``), delivered to the conversation the message came
from: the group (``IM_GROUP.<conversationId>``) or the sender's 1:1 chat with the robot
(``IM_ROBOT.<senderStaffId>``). When that is impossible (no ``ctx.api``) or DingTalk refuses the
card (a missing ``Card.Instance.Write`` scope, an unpublished template, a space it could not reach),
the reply falls back to an ordinary message through ``ctx.reply``: ``fallback=`` for an
interactive card, the streamed text as one markdown message for an AI card. A card that may
have been delivered (a timeout after sending) is never doubled by a fallback.
"""

from __future__ import annotations

import functools
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Type

from .errors import ApiError, ConfigurationError, DingSyncError, TransportError

if TYPE_CHECKING:
    from .api.cards import CardStream, DeliverResult
    from .context import Context
    from .messages import MessageLike
    from .models import ChatbotMessage

__all__ = ["conversation_space", "send_card_reply", "ai_card_reply", "AiCardReply"]


def conversation_space(msg: ChatbotMessage) -> str:
    """The card space of the conversation ``msg`` came from.

    Example:
        >>> from dingsync import ChatbotMessage
        >>> conversation_space(ChatbotMessage.from_wire({"msgId": "m1", "msgtype": "text",
        ...     "text": {"content": "hi"}, "conversationType": "2", "conversationId": "cid1=="}))
        'dtv1.card//IM_GROUP.cid1=='

    Raises:
        ConfigurationError: the message names no conversation (group) or sender (1:1).
    """
    from .api.cards import group_space, robot_space

    if msg.is_group:
        if not msg.conversation_id:
            raise ConfigurationError("the message has no conversationId to send a card to")
        return group_space(msg.conversation_id)
    if not msg.sender_staff_id:
        raise ConfigurationError("the message has no senderStaffId to send a card to")
    return robot_space(msg.sender_staff_id)


def _refused(error: DingSyncError) -> bool:
    """True when DingTalk certainly showed nothing, so a fallback cannot double the reply."""
    if isinstance(error, ApiError):
        return not error.maybe_sent
    return isinstance(error, TransportError) and not error.maybe_sent


def send_card_reply(
    ctx: Context,
    msg: ChatbotMessage,
    template_id: str,
    card_data: Optional[Mapping[str, Any]],
    *,
    fallback: Optional[MessageLike],
    out_track_id: Optional[str],
    private_data: Optional[Mapping[str, Mapping[str, Any]]],
) -> Optional[DeliverResult]:
    """The work of :meth:`Context.reply_card`; None when the fallback was sent instead."""
    from .api.cards import new_out_track_id

    space = conversation_space(msg)
    if ctx.api is None:
        if fallback is None:
            raise ConfigurationError(
                "a card reply needs the card OpenAPI (ctx.api): a session webhook cannot "
                "carry cards; give the StreamClient an ApiClient, or pass fallback="
            )
        ctx.logger.info("no ApiClient for the card; replying with the fallback message")
        ctx.reply(fallback)
        return None
    try:
        result = ctx.api.cards.create_and_deliver(
            template_id,
            out_track_id or new_out_track_id(),
            card_data,
            space,
            private_data=private_data,
        )
    except DingSyncError as exc:
        if fallback is None or not _refused(exc):
            raise
        ctx.logger.warning("the card was refused (%s); replying with the fallback message", exc)
        ctx.reply(fallback)
        return None
    if result.ok:
        return result
    reasons = "; ".join(s.error_msg or s.space_type for s in result.failed)
    if fallback is None:
        raise ApiError(200, "deliverFailed", f"the card reached no space: {reasons}")
    ctx.logger.warning("the card was not delivered (%s); replying with the fallback", reasons)
    ctx.reply(fallback)
    return None


def ai_card_reply(
    ctx: Context,
    msg: ChatbotMessage,
    template_id: str,
    *,
    key: str,
    card_data: Optional[Mapping[str, Any]],
    title: str,
    interval: float,
    error_text: Optional[str],
    clock: Optional[Callable[[], float]],
) -> AiCardReply:
    """The work of :meth:`Context.reply_ai_card`: the card is opened on entering the block."""
    space = conversation_space(msg)
    api = ctx.api
    open_card = (
        None
        if api is None
        else functools.partial(
            api.cards.ai_card,
            template_id,
            space,
            key=key,
            card_data=card_data,
            interval=interval,
            error_text=error_text,
            clock=clock or time.monotonic,  # the default clock enables the idle flush
        )
    )
    return AiCardReply(ctx, open_card, title=title, error_text=error_text)


class AiCardReply:
    """What ``with ctx.reply_ai_card(...) as card`` gives: ``append``/``set`` the answer.

    With an AI card, text is streamed into it (a :class:`~dingsync.api.cards.CardStream`). When
    the card cannot be created, the text is collected and sent as one markdown reply on leaving
    the block (``fell_back`` is True); if the block raises, the fallback sends what was written
    plus ``error_text`` (nothing when neither exists) and the exception propagates.

    Example:
        >>> with ctx.reply_ai_card("tpl.schema") as card:  # doctest: +SKIP
        ...     for chunk in llm.stream(question):
        ...         card.append(chunk)
    """

    def __init__(
        self,
        ctx: Context,
        open_card: Optional[Callable[[], CardStream]],
        *,
        title: str,
        error_text: Optional[str],
    ) -> None:
        if not title.strip():
            raise ConfigurationError("title must be non-empty (it is the chat-list preview)")
        self._ctx = ctx
        self._open_card = open_card
        self.title = title
        self.error_text = error_text
        self.card: Optional[CardStream] = None
        self.fell_back = False
        self._text = ""

    @property
    def text(self) -> str:
        """The answer so far."""
        return self.card.text if self.card is not None else self._text

    def __enter__(self) -> AiCardReply:
        if self._open_card is None:
            self.fell_back = True
            self._ctx.logger.info("no ApiClient for the AI card; the answer goes out as one reply")
            return self
        stream = self._open_card()
        try:
            stream.__enter__()
        except DingSyncError as exc:
            if not _refused(exc):
                raise
            self.fell_back = True
            self._ctx.logger.warning(
                "the AI card was refused (%s); the answer goes out as one reply", exc
            )
            return self
        self.card = stream
        return self

    def append(self, chunk: str) -> None:
        """Add text to the answer."""
        if self.card is not None:
            self.card.append(chunk)
        else:
            self._text += chunk

    def set(self, text: str) -> None:
        """Replace the whole answer."""
        if self.card is not None:
            self.card.set(text)
        else:
            self._text = text

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self.card is not None:
            self.card.__exit__(exc_type, exc, tb)
            return
        from .messages import Markdown

        text = self._text
        if exc is not None and self.error_text:
            text = f"{text}\n\n{self.error_text}" if text else self.error_text
        if not text.strip():
            if exc is None:
                raise ConfigurationError("the AI card reply is empty: append() some text")
            return
        try:
            self._ctx.reply(Markdown(self.title, text))
        except DingSyncError:
            if exc is None:
                raise
            # the block's own exception matters more than the failed attempt to report it
            self._ctx.logger.warning("could not send the fallback of the failed AI card reply")

    def __repr__(self) -> str:
        return f"AiCardReply(card={self.card!r}, fell_back={self.fell_back})"
