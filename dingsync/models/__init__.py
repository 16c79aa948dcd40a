"""Typed payloads handed to handlers: chatbot messages, card callbacks, events."""

from __future__ import annotations

from .cards import CardCallback, CardResponse, render_param_map
from .chatbot import (
    Attachment,
    AtUser,
    AudioContent,
    ChatbotMessage,
    FileContent,
    MessageContent,
    PictureContent,
    RichTextContent,
    RichTextItem,
    TextContent,
    UnknownContent,
    VideoContent,
)
from .events import Event

__all__ = [
    "ChatbotMessage",
    "AtUser",
    "Attachment",
    "MessageContent",
    "TextContent",
    "PictureContent",
    "RichTextContent",
    "RichTextItem",
    "AudioContent",
    "VideoContent",
    "FileContent",
    "UnknownContent",
    "CardCallback",
    "CardResponse",
    "render_param_map",
    "Event",
]
