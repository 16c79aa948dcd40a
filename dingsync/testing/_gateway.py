"""The Stream gateway side of the emulator (filled in by the gateway work)."""

from __future__ import annotations


class GatewayMixin:
    """Stream gateway: tickets, websocket connections, pushes, acks, SYSTEM frames, redelivery."""
