"""Context: what a handler gets besides the payload: replies, the API client, a logger.

A reply goes through the message's session webhook while it is valid; once it has expired
(checked locally first, then by DingTalk's errcode 300001) it falls back to the robot OpenAPI:
``send_to_group`` in a group, ``send_to_users`` in a 1:1 chat.

Example:
    >>> from dingsync import ChatbotMessage, Context
    >>> msg = ChatbotMessage.from_wire({"msgId": "m1", "msgtype": "text",
    ...     "text": {"content": "hi"}, "sessionWebhook": "https://example.invalid/s?session=x"})
    >>> ctx = Context.for_testing(msg)
    >>> ctx.reply_text("hello")
    >>> ctx.replies
    [{'msgtype': 'text', 'text': {'content': 'hello'}}]
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Union

from ._redact import redact_logger
from .errors import (
    ApiError,
    ConfigurationError,
    RequestTimeout,
    SessionExpired,
    TransportError,
    UnsupportedMessage,
)
from .frames import Frame
from .models import ChatbotMessage

if TYPE_CHECKING:
    import requests

    from .api import ApiClient
    from .api.cards import DeliverResult
    from .card_replies import AiCardReply
    from .messages import Message, MessageLike

__all__ = ["Context", "WebhookPoster", "PostJson"]

handler_log = logging.getLogger("dingsync.handler")

#: ``post(url, body) -> decoded JSON``; raises SessionExpired, ApiError or TransportError.
PostJson = Callable[[str, Mapping[str, Any]], Mapping[str, Any]]

_SESSION_EXPIRED = 300001


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class WebhookPoster:
    """Posts a JSON body to a session webhook with a timeout and decodes DingTalk's answer.

    Errors are translated here: errcode 300001 -> :class:`SessionExpired`, another non-zero
    errcode or HTTP status -> :class:`ApiError`, a network failure -> :class:`TransportError`.
    No error message ever contains the webhook URL (its query string is a credential).

    Example:
        >>> post = WebhookPoster(timeout=5.0)
        >>> post(msg.session_webhook, {"msgtype": "text", "text": {"content": "hi"}})  # doctest: +SKIP
        {'errcode': 0, 'errmsg': 'ok'}
    """

    def __init__(
        self,
        session: Optional[requests.Session] = None,
        *,
        timeout: float = 10.0,
        verify: Union[bool, str] = True,
        proxies: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._session = session
        self.timeout = timeout
        self.verify = verify
        self.proxies = dict(proxies) if proxies else None

    def __call__(self, url: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        from .metrics import counting

        with counting("session_webhook"):
            return self._post(url, body)

    def _post(self, url: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        import requests

        # urllib3 logs each request line, query string included, at DEBUG; a session webhook's
        # query is its credential.
        redact_logger("urllib3.connectionpool")
        session = self._session
        if session is None:
            session = self._session = requests.Session()
        try:
            resp = session.post(
                url,
                json=dict(body),
                headers={"Accept": "application/json"},
                timeout=self.timeout,
                verify=self.verify,
                proxies=self.proxies,
            )
        # requests puts the URL, session token included, into its messages: the originals are
        # dropped (from None) so that no traceback can carry them into a log.
        except requests.Timeout as exc:
            raise RequestTimeout(
                f"the session webhook did not answer within {self.timeout}s",
                maybe_sent=not isinstance(exc, requests.ConnectTimeout),
            ) from None
        except requests.RequestException as exc:
            raise TransportError(
                f"posting to the session webhook failed ({type(exc).__name__})"
            ) from None
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if resp.status_code >= 400 or not isinstance(answer, dict):
            raise ApiError(
                resp.status_code,
                str(resp.status_code),
                "the session webhook answered with something other than a JSON result",
            )
        code = answer.get("errcode", 0)
        if code in (_SESSION_EXPIRED, str(_SESSION_EXPIRED)):
            raise SessionExpired(
                resp.status_code,
                str(code),
                str(answer.get("errmsg", "session expired")),
                hint="the session webhook expired; replies need the robot OpenAPI now",
            )
        if code not in (0, "0", None):
            raise ApiError(resp.status_code, str(code), str(answer.get("errmsg", "")))
        return answer


class _Recorder:
    """The offline poster of :meth:`Context.for_testing`: accepts every reply."""

    def __call__(self, url: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"errcode": 0, "errmsg": "ok"}


class Context:
    """Handed to every handler with the payload.

    Attributes:
        frame: the :class:`~dingsync.Frame` being handled (None in hand-made contexts).
        message: the typed payload (ChatbotMessage, CardCallback, Event or the raw dict).
        api: the :class:`~dingsync.ApiClient`, or None when none was configured.
        redelivered: True when DingTalk delivers this message again after a failed attempt.
        logger: a LoggerAdapter whose records carry ``message_id`` in ``extra``.
        replies: the webhook bodies this context has sent, in order (OpenAPI fallbacks are not
            listed: they are the ApiClient's business).

    Example:
        >>> ctx = Context.for_testing()
        >>> ctx.message_id, ctx.redelivered, ctx.api
        ('test-message', False, None)
    """

    def __init__(
        self,
        *,
        frame: Optional[Frame] = None,
        message: Any = None,
        api: Optional[ApiClient] = None,
        redelivered: bool = False,
        post: Optional[PostJson] = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.frame = frame
        self.message = message
        self.api = api
        self.redelivered = redelivered
        self._post: PostJson = post if post is not None else WebhookPoster()
        self._now = now
        self.replies: List[Mapping[str, Any]] = []
        self._logger: Optional[logging.LoggerAdapter[logging.Logger]] = None

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A LoggerAdapter whose records carry ``message_id`` (and ``topic``, ``msg_id``) in
        ``extra``; made on first use."""
        adapter = self._logger
        if adapter is None:
            extra: Dict[str, Any] = {"message_id": self.message_id}
            if self.frame is not None:
                extra["topic"] = self.frame.topic
            if isinstance(self.message, ChatbotMessage):
                extra["msg_id"] = self.message.msg_id
            adapter = self._logger = logging.LoggerAdapter(handler_log, extra)
        return adapter

    @logger.setter
    def logger(self, adapter: logging.LoggerAdapter[logging.Logger]) -> None:
        self._logger = adapter

    @classmethod
    def for_testing(
        cls,
        message: Any = None,
        *,
        frame: Optional[Frame] = None,
        api: Optional[ApiClient] = None,
        redelivered: bool = False,
        post: Optional[PostJson] = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> Context:
        """A context that needs no network: replies are only recorded in ``replies``
        (unless ``post`` is given), so handlers can be unit-tested by calling them or through
        ``route.dispatch(frame, ctx)``, with the builders of :mod:`dingsync.testing`.

        A message without a ``sessionWebhook`` (hand-made) has its replies recorded too; one
        whose webhook has expired behaves as in production (OpenAPI fallback through ``api``).

        Example:
            >>> msg = ChatbotMessage.from_wire({"msgId": "m", "msgtype": "text",
            ...     "text": {"content": "1+1"}, "sessionWebhook": "https://x.invalid/?session=s"})
            >>> ctx = Context.for_testing(msg)
            >>> ctx.reply("2")
            >>> ctx.replies[0]["text"]
            {'content': '2'}
        """
        return cls(
            frame=frame,
            message=message,
            api=api,
            redelivered=redelivered,
            post=post if post is not None else _Recorder(),
            now=now,
        )

    def __repr__(self) -> str:
        return f"Context(message_id={self.message_id!r}, redelivered={self.redelivered!r})"

    @property
    def message_id(self) -> str:
        """The frame's ``messageId`` (``"test-message"`` in a hand-made context)."""
        return self.frame.message_id if self.frame is not None else "test-message"

    def bind(self, frame: Frame, message: Any) -> Context:
        """This context for ``frame`` and its decoded ``message`` (fields already set win).

        Example:
            >>> f = Frame.from_dict({"type": "CALLBACK", "headers": {"messageId": "m9", "topic": "/t"}})
            >>> Context.for_testing().bind(f, {"k": 1}).message_id
            'm9'
        """
        if self.frame is not None and self.message is not None:
            return self
        bound = Context(
            frame=self.frame or frame,
            message=self.message if self.message is not None else message,
            api=self.api,
            redelivered=self.redelivered,
            post=self._post,
            now=self._now,
        )
        bound.replies = self.replies  # a test holding the original context sees the replies
        return bound

    # -- replies -------------------------------------------------------------------------
    def reply(self, message: Union[Message, str, Mapping[str, Any]]) -> None:
        """Reply in the conversation the chatbot message came from.

        ``message`` is a :mod:`dingsync.messages` builder, a plain string (sent as text) or a
        raw webhook body (a dict, which cannot fall back to the OpenAPI).

        Example:
            >>> from dingsync import messages as m
            >>> ctx.reply(m.Markdown(title="echo", text="**hi**"))  # doctest: +SKIP

        Raises:
            SessionExpired: the webhook expired and no ``api`` is available for the fallback.
            ApiError: DingTalk refused the reply.
            TransportError: the network failed.
        """
        msg = self._chatbot_message()
        built: Optional[Message] = None
        if isinstance(message, Mapping):
            body: Optional[Mapping[str, Any]] = dict(message)
        else:
            from .messages import as_message

            built = as_message(message)
            try:
                body = built.to_webhook()
            except UnsupportedMessage:
                if self.api is None:
                    raise
                body = None  # images, files ...: only the OpenAPI carries them
        # A testing context records a reply to a hand-made message that has no webhook at all.
        offline = isinstance(self._post, _Recorder) and not msg.session_webhook
        live = bool(msg.session_webhook) and msg.session_webhook_valid(self._now())
        if body is not None and (live or offline):
            from .limits import check_size

            check_size("session webhook", body)
            try:
                self._post(msg.session_webhook or "", body)
                self.replies.append(body)
                return
            except SessionExpired:
                if built is None or self.api is None:
                    raise
                self.logger.info("session webhook expired early; replying through the OpenAPI")
        elif built is None or self.api is None:
            raise SessionExpired(
                0,
                str(_SESSION_EXPIRED),
                "the message's session webhook has expired"
                if msg.session_webhook
                else "the message has no sessionWebhook to reply to (to test a handler "
                "offline, pass dingsync.Context.for_testing())",
                hint="a raw dict body cannot go through the OpenAPI; reply with a "
                "dingsync.messages builder"
                if built is None
                else "this context has no ApiClient (ctx.api) for the OpenAPI fallback",
            )
        assert built is not None
        self._reply_through_api(msg, built)

    def reply_text(self, text: str, *, at_sender: bool = False) -> None:
        """Reply with plain text, optionally @-mentioning the sender (webhook replies only).

        Example:
            >>> ctx.reply_text("on it", at_sender=True)  # doctest: +SKIP
        """
        from .messages import Text

        sender = self._chatbot_message().sender_staff_id
        mention = [sender] if at_sender and sender else []
        self.reply(Text(text, at_user_ids=mention))

    def reply_markdown(self, title: str, text: str) -> None:
        """Reply with markdown; ``title`` is the preview shown in the chat list.

        Example:
            >>> ctx.reply_markdown("Report", "## all green")  # doctest: +SKIP
        """
        from .messages import Markdown

        self.reply(Markdown(title, text))

    def _chatbot_message(self) -> ChatbotMessage:
        if not isinstance(self.message, ChatbotMessage):
            raise ConfigurationError(
                "reply() needs a chatbot message; events and card callbacks have no "
                "conversation to reply to (use ctx.api instead)"
            )
        return self.message

    def _reply_through_api(self, msg: ChatbotMessage, message: Message) -> None:
        assert self.api is not None
        if message.has_mentions:
            # the robot OpenAPI cannot mention; a reply matters more than its @
            self.logger.warning(
                "replying through the OpenAPI, which cannot @-mention: sent without"
            )
            message = message.without_mentions()
        if msg.is_group:
            if not msg.conversation_id:
                raise ConfigurationError("the message has no conversationId to reply to")
            self.api.robot.send_to_group(msg.conversation_id, message)
        else:
            if not msg.sender_staff_id:
                raise ConfigurationError("the message has no senderStaffId to reply to")
            self.api.robot.send_to_users([msg.sender_staff_id], message)

    # -- card replies ----------------------------------------------------------------------
    def reply_card(
        self,
        template_id: str,
        card_data: Optional[Mapping[str, Any]] = None,
        *,
        fallback: Optional[MessageLike] = None,
        out_track_id: Optional[str] = None,
        private_data: Optional[Mapping[str, Mapping[str, Any]]] = None,
    ) -> Optional[DeliverResult]:
        """Reply with an interactive card, in the group or 1:1 chat the message came from.

        Cards go through the card OpenAPI (``ctx.api``); a session webhook cannot carry them.
        Without ``ctx.api``, or when DingTalk refuses the card, ``fallback`` (a message or a
        string) is sent with :meth:`reply` instead and None returned. Card callbacks arrive
        through the Stream (``callbackType`` STREAM): subscribe with ``@route.card_callback``.

        Example:
            >>> ctx.reply_card("vote.schema", {"question": "Lunch?"},  # doctest: +SKIP
            ...                fallback="Lunch? Answer yes or no")

        Raises:
            ConfigurationError: no ``ctx.api`` and no ``fallback``.
            ApiError: DingTalk refused the card (or reached no space) and there is no fallback.
        """
        from .card_replies import send_card_reply

        return send_card_reply(
            self,
            self._chatbot_message(),
            template_id,
            card_data,
            fallback=fallback,
            out_track_id=out_track_id,
            private_data=private_data,
        )

    def reply_ai_card(
        self,
        template_id: str,
        *,
        key: str = "content",
        card_data: Optional[Mapping[str, Any]] = None,
        title: str = "Answer",
        interval: float = 0.5,
        error_text: Optional[str] = None,
        clock: Optional[Callable[[], float]] = None,
    ) -> AiCardReply:
        """Reply with an AI card whose ``key`` variable streams the text you append.

        Updates are coalesced to one per ``interval`` seconds, the card is finalized on leaving
        the block and marked failed if the block raises. Without ``ctx.api``, or when DingTalk
        refuses the card, the text is sent as one markdown reply titled ``title`` at the end.

        Example:
            >>> with ctx.reply_ai_card("ai.schema") as card:  # doctest: +SKIP
            ...     for chunk in llm.stream(msg.text):
            ...         card.append(chunk)
        """
        from .card_replies import ai_card_reply

        return ai_card_reply(
            self,
            self._chatbot_message(),
            template_id,
            key=key,
            card_data=card_data,
            title=title,
            interval=interval,
            error_text=error_text,
            clock=clock,
        )
