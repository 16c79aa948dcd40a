"""The OpenAPI side of the emulator beyond tokens (filled in by the OpenAPI work)."""

from __future__ import annotations


class OpenApiMixin:
    """Robots, cards, custom webhooks, work notifications, media and file downloads."""
