"""The receiving side: :class:`StreamClient` (and the dedupe stores it uses, re-exported).

Example:
    >>> from dingsync.stream import MemoryDedupeStore, StreamClient
    >>> store = MemoryDedupeStore(ttl=600, max_entries=200_000)
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
