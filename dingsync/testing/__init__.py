"""A local DingTalk for tests: Stream gateway, OpenAPI and webhooks on 127.0.0.1.

Example:
    >>> from dingsync.testing import FakeDingTalk
    >>> with FakeDingTalk() as fake:
    ...     fake.client_id
    'test-client-id'
"""

from __future__ import annotations

from . import payloads
from ._fake import Failure, FakeDingTalk
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
from .transcripts import (
    ReplayResult,
    assert_transcript,
    load_transcript,
    record_transcript,
    replay_transcript,
    running_router,
)

__all__ = [
    "FakeDingTalk",
    "Failure",
    "Request",
    "Response",
    "payloads",
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
