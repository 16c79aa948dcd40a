"""A local DingTalk for tests: Stream gateway, OpenAPI and webhooks on 127.0.0.1.

The emulator (:class:`FakeDingTalk`, :class:`Failure`) needs the ``testing`` extra
(websockets); it is imported on first use, so that the rest of this package, and the pytest
plugin that every installation of dingsync registers, work without it.

Example:
    >>> from dingsync.testing import FakeDingTalk
    >>> with FakeDingTalk() as fake:
    ...     fake.client_id
    'test-client-id'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import payloads
from ._callbacks import HttpDelivery
from ._http import Request, Response
from ._openapi import (
    CardInstance,
    MediaFile,
    SentMessage,
    StoredFile,
    WebhookMessage,
    WebhookRobotState,
    WorkNotice,
)
from ._records import (
    AckFrame,
    Connection,
    OpenRequest,
    Pong,
    PreparedFrame,
    Push,
    PushStats,
    Redelivery,
    Reply,
    Subscription,
)
from .builders import (
    callback_frame,
    card_callback,
    card_callback_frame,
    chatbot_frame,
    chatbot_message,
    event,
    event_frame,
)
from .transcripts import (
    ReplayResult,
    assert_transcript,
    load_transcript,
    record_transcript,
    replay_transcript,
    running_router,
)

if TYPE_CHECKING:
    from ._fake import Failure, FakeDingTalk

__all__ = [
    "FakeDingTalk",
    "Failure",
    "Request",
    "Response",
    "payloads",
    # offline builders: frames for route.dispatch, typed payloads for handler functions
    "chatbot_frame",
    "chatbot_message",
    "event_frame",
    "event",
    "card_callback_frame",
    "card_callback",
    "callback_frame",
    "AckFrame",
    "Connection",
    "OpenRequest",
    "Pong",
    "PreparedFrame",
    "Push",
    "PushStats",
    "Redelivery",
    "Reply",
    "Subscription",
    "HttpDelivery",
    # OpenAPI recordings (fake.sent, fake.cards, fake.webhook_messages, ...)
    "SentMessage",
    "CardInstance",
    "WebhookMessage",
    "WebhookRobotState",
    "WorkNotice",
    "MediaFile",
    "StoredFile",
    # transcripts: a chat saved from the chat window, replayed as a test
    "ReplayResult",
    "assert_transcript",
    "load_transcript",
    "record_transcript",
    "replay_transcript",
    "running_router",
]

_NEEDS_EXTRA = frozenset({"FakeDingTalk", "Failure"})


def __getattr__(name: str) -> Any:
    if name not in _NEEDS_EXTRA:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from . import _fake
    except ImportError as exc:
        from .._extras import missing_extra

        raise ImportError(missing_extra("the emulator", "testing", exc)) from exc
    return getattr(_fake, name)
