"""The receiving side: :class:`StreamClient` (the dedupe stores live in :mod:`dingsync.dedupe`).

Example:
    >>> from dingsync.stream import StreamClient, StreamStats
"""

from __future__ import annotations

from ..dedupe import Claim, DedupeStore, MemoryDedupeStore, RedisDedupeStore
from .client import StreamClient
from .liveness import StreamStats

__all__ = [
    "StreamClient",
    "StreamStats",
    "DedupeStore",
    "MemoryDedupeStore",
    "RedisDedupeStore",
    "Claim",
]
