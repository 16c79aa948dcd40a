"""One readable line for each message the emulator receives: what ``dingsync emulator`` prints,
so that a cron job or a bot tried against it shows what it sent, and where.

Example:
    >>> from dingsync.testing._openapi import SentMessage
    >>> sent = SentMessage(kind="group", robot_code="ding1", msg_key="sampleMarkdown",
    ...                    msg_param={"title": "Nightly", "text": "all **green**"},
    ...                    process_query_key="k1", at=0.0, open_conversation_id="cidA==")
    >>> describe_sent(sent)
    'robot -> group cidA==: sampleMarkdown "all **green**"'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Sequence, TypeVar

from ._openapi import SentMessage, WebhookMessage, WorkNotice
from ._records import Reply

if TYPE_CHECKING:
    from ._fake import FakeDingTalk

__all__ = ["MessageFeed", "describe_sent"]

_MAX_TEXT = 120
T = TypeVar("T")


def _quote(text: Optional[str]) -> str:
    if text is None:
        return "(no text)"
    flat = " / ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    if len(flat) > _MAX_TEXT:
        flat = flat[: _MAX_TEXT - 1] + "…"
    return f'"{flat}"'


def describe_sent(message: SentMessage) -> str:
    """A robot OpenAPI message (1:1, group or private chat) as one line."""
    if message.kind == "oto":
        to = "users " + ",".join(message.user_ids)
        missed = sorted(set(message.user_ids) - set(message.delivered_to))
        if missed:
            to += f" (not delivered to {','.join(missed)})"
    elif message.kind == "private":
        to = f"1:1 chat {message.open_conversation_id}"
    else:
        to = f"group {message.open_conversation_id}"
    return f"robot -> {to}: {message.msg_key} {_quote(message.text)}"


def describe_webhook(message: WebhookMessage) -> str:
    """A custom group robot's message as one line."""
    return f"custom robot -> its group: {message.msgtype} {_quote(message.text)}"


def describe_reply(reply: Reply) -> str:
    """A session-webhook reply of a bot as one line."""
    return f"reply -> {reply.conversation_id}: {reply.msgtype} {_quote(reply.text)}"


def describe_notice(notice: WorkNotice) -> str:
    """A work notification as one line."""
    to = "everyone" if notice.to_all else ",".join(notice.user_ids + notice.dept_ids)
    kind = str(notice.msg.get("msgtype", "?"))
    part = notice.msg.get(kind)
    text = part.get("content", part.get("text")) if isinstance(part, dict) else None
    return f"work notice -> {to}: {kind} {_quote(text if isinstance(text, str) else None)}"


class MessageFeed:
    """The lines for messages recorded since the last call of :meth:`new_lines`.

    Example::

        feed = MessageFeed(fake)
        ...
        for line in feed.new_lines():
            print(line)
    """

    def __init__(self, fake: FakeDingTalk) -> None:
        self._fake = fake
        self._seen = {"sent": 0, "webhook": 0, "rejected": 0, "replies": 0, "notices": 0}

    def _fresh(self, name: str, records: Sequence[T]) -> List[T]:
        # The recordings only grow, so an index per list finds the new ones.
        start = self._seen[name]
        self._seen[name] = len(records)
        return list(records[start:])

    def new_lines(self) -> List[str]:
        """One line per message received since the previous call, oldest first per kind."""
        fake = self._fake
        lines: List[str] = []
        lines += [describe_sent(m) for m in self._fresh("sent", list(fake.sent))]
        lines += [describe_webhook(m) for m in self._fresh("webhook", list(fake.webhook_messages))]
        lines += [
            f"custom robot refused a message: errcode {code} {message}"
            for code, message in self._fresh("rejected", list(fake.webhook_rejections))
        ]
        lines += [describe_reply(r) for r in self._fresh("replies", list(fake.replies))]
        lines += [describe_notice(n) for n in self._fresh("notices", list(fake.work_notices))]
        return lines
