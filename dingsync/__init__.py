"""dingsync: a synchronous toolkit for DingTalk Stream Mode and the DingTalk OpenAPI.

Example:
    >>> import dingsync
    >>> route = dingsync.Router()
    >>> @route.chatbot
    ... def echo(msg, ctx):
    ...     ctx.reply_text(msg.text)

Public names are loaded on first use, so ``import dingsync`` stays cheap: a script that only
sends messages never imports the websocket, retry or CLI libraries.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api import ApiClient
    from .api.webhook import WebhookRobot
    from .callbacks import CallbackApp
    from .config import Credentials, Endpoints, ReconnectPolicy, StreamConfig
    from .context import Context
    from .dedupe import MemoryDedupeStore, RedisDedupeStore
    from .errors import (
        ApiError,
        AuthError,
        ConfigurationError,
        DingSyncError,
        PermissionDenied,
        ProtocolError,
        RateLimited,
        ReconnectGaveUp,
        StreamError,
        TransportError,
    )
    from .frames import Ack, Frame, Headers
    from .models import CardCallback, CardResponse, ChatbotMessage, Event
    from .routing import Router
    from .stream import StreamClient
    from .tokens import FileTokenCache, MemoryTokenCache, RedisTokenCache

__all__ = [
    "__version__",
    # receiving
    "Router",
    "Context",
    "StreamClient",
    "StreamConfig",
    "ReconnectPolicy",
    "MemoryDedupeStore",
    "RedisDedupeStore",
    "CallbackApp",
    # payloads and wire
    "ChatbotMessage",
    "CardCallback",
    "CardResponse",
    "Event",
    "Frame",
    "Headers",
    "Ack",
    # sending
    "ApiClient",
    "WebhookRobot",
    "MemoryTokenCache",
    "FileTokenCache",
    "RedisTokenCache",
    # configuration
    "Credentials",
    "Endpoints",
    # errors
    "DingSyncError",
    "ConfigurationError",
    "AuthError",
    "ApiError",
    "RateLimited",
    "PermissionDenied",
    "TransportError",
    "StreamError",
    "ProtocolError",
    "ReconnectGaveUp",
]

_LOCATIONS = {
    "Router": "routing",
    "Context": "context",
    "StreamClient": "stream",
    "MemoryDedupeStore": "dedupe",
    "RedisDedupeStore": "dedupe",
    "CallbackApp": "callbacks",
    "StreamConfig": "config",
    "ReconnectPolicy": "config",
    "Credentials": "config",
    "Endpoints": "config",
    "ChatbotMessage": "models",
    "CardCallback": "models",
    "CardResponse": "models",
    "Event": "models",
    "Frame": "frames",
    "Headers": "frames",
    "Ack": "frames",
    "ApiClient": "api",
    "WebhookRobot": "api.webhook",
    "MemoryTokenCache": "tokens",
    "FileTokenCache": "tokens",
    "RedisTokenCache": "tokens",
    "DingSyncError": "errors",
    "ConfigurationError": "errors",
    "AuthError": "errors",
    "ApiError": "errors",
    "RateLimited": "errors",
    "PermissionDenied": "errors",
    "TransportError": "errors",
    "StreamError": "errors",
    "ProtocolError": "errors",
    "ReconnectGaveUp": "errors",
}

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'dingsync' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
