"""The receiving side over a websocket (the dedupe stores are in :mod:`dingsync.dedupe`).

Example:
    >>> from dingsync.stream import StreamClient, StreamStats
"""

from __future__ import annotations

from .client import StreamClient
from .liveness import StreamStats

__all__ = ["StreamClient", "StreamStats"]
