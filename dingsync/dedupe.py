"""Dedupe stores: remember which messages were handled, and the ack each one got.

DingTalk redelivers a message whose ack is late or missing (events by design, chatbot messages
after about 60 s in practice), sometimes to another connection or another replica. The client
claims every message in a :class:`DedupeStore` before running its handler:

- ``new``: nobody has it; run the handler, then :meth:`~DedupeStore.complete` (an ack with code
  200) or :meth:`~DedupeStore.release` (an error ack: a redelivery should run it again);
- ``processing``: another thread or replica is running it right now; do not run it twice;
- ``done``: it was handled; answer the redelivery with the cached ack.

:class:`MemoryDedupeStore` (the default) serves one process; :class:`RedisDedupeStore` is shared
by every replica of an app.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, Generic, List, Optional, Protocol, Tuple, TypeVar, Union

import attrs

from .errors import ConfigurationError, ProtocolError
from .frames import Ack

__all__ = ["Claim", "DedupeStore", "Deduper", "MemoryDedupeStore", "RedisDedupeStore"]

log = logging.getLogger("dingsync.dedupe")

W = TypeVar("W")

NEW = "new"
PROCESSING = "processing"
DONE = "done"


@attrs.frozen
class Claim:
    """The answer of :meth:`DedupeStore.claim`.

    Attributes:
        state: ``"new"`` (the caller owns the message now), ``"processing"`` or ``"done"``.
        ack: the cached ack when ``state == "done"``.
        attempt: how many times the message has been claimed as new (2 or more: a retry after a
            failed attempt, shown to handlers as ``ctx.redelivered``).
    """

    state: str
    ack: Optional[Ack] = None
    attempt: int = 1


_NEW_CLAIM = Claim(NEW)  # frozen: one instance serves every first claim


class DedupeStore(Protocol):
    """What the stream client needs from a dedupe store (both stores here implement it).

    Example:
        >>> store = MemoryDedupeStore(ttl=60)
        >>> store.claim("m1").state
        'new'
        >>> store.claim("m1").state
        'processing'
        >>> store.complete("m1", Ack.ok("m1", {"response": None}))
        >>> store.claim("m1").ack.code
        200
    """

    def claim(self, key: str) -> Claim:
        """Claim ``key``; only a ``"new"`` answer lets the caller run the handler."""
        ...

    def complete(self, key: str, ack: Ack) -> None:
        """Record that ``key`` was handled and answered with ``ack``."""
        ...

    def release(self, key: str) -> None:
        """Give ``key`` up after a failure, so that a redelivery runs the handler again."""
        ...


@attrs.define
class _Entry:
    state: str
    expires_at: float
    ack: Optional[Ack] = None
    attempts: int = 1


class MemoryDedupeStore:
    """An in-process dedupe store that remembers each message for ``ttl`` seconds.

    It holds at most ``max_entries`` messages, about 450 bytes each with their acks (the
    default 100,000 is about 45 MiB at its fullest): enough to keep the TTL at up to
    ``max_entries / ttl`` messages per second (166/s with the defaults; a redelivery a minute
    later is still recognised at 1,666/s). Above that rate the oldest entries go
    early, with a warning, and a redelivery after them may run its handler again.

    Example:
        >>> store = MemoryDedupeStore(ttl=600, max_entries=100_000)
        >>> store.claim("msg-1").state
        'new'
    """

    def __init__(
        self,
        ttl: float = 600.0,
        max_entries: int = 100_000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_entries <= 0:
            raise ConfigurationError("ttl and max_entries must be positive")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # Ordered by last change, so expiry times only grow from the front to the back.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._warned_at: Optional[float] = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def claim(self, key: str) -> Claim:
        """See :meth:`DedupeStore.claim`."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at <= now:
                del self._entries[key]
                entry = None
            if entry is None:
                self._add(key, _Entry(PROCESSING, now + self.ttl), now)
                return _NEW_CLAIM
            self._entries.move_to_end(key)
            entry.expires_at = max(entry.expires_at, now + self.ttl)
            if entry.state == NEW:  # released after a failure: this delivery is a retry
                entry.state = PROCESSING
                entry.attempts += 1
                return Claim(NEW, attempt=entry.attempts)
            return Claim(entry.state, entry.ack, entry.attempts)

    def complete(self, key: str, ack: Ack) -> None:
        """See :meth:`DedupeStore.complete`."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._add(key, _Entry(DONE, now + self.ttl, ack), now)
            else:
                entry.state, entry.expires_at, entry.ack = DONE, now + self.ttl, ack
                self._entries.move_to_end(key)

    def release(self, key: str) -> None:
        """See :meth:`DedupeStore.release`."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.state == PROCESSING:
                # Kept (as "new") only to count attempts, so the retry is marked redelivered.
                entry.state = NEW

    def _add(self, key: str, entry: _Entry, now: float) -> None:  # under _lock
        entries = self._entries
        entries[key] = entry
        while entries:  # expired entries leave from the front, a few per insert at most
            oldest = next(iter(entries.values()))
            if oldest.expires_at > now and len(entries) <= self.max_entries:
                break
            if oldest.expires_at > now:
                self._warn_full(now, oldest.expires_at - now)
            entries.popitem(last=False)

    def _warn_full(self, now: float, left: float) -> None:
        if self._warned_at is not None and now - self._warned_at < 60.0:
            return
        self._warned_at = now
        log.warning(
            "the memory dedupe store is full (%d messages): messages are forgotten %.0fs "
            "before their ttl of %gs, so a late redelivery may run again; raise "
            "StreamConfig(dedupe_max_entries=...) or use a RedisDedupeStore",
            self.max_entries,
            left,
            self.ttl,
        )


_PROCESSING_VALUE = b"processing"


class RedisDedupeStore:
    """A dedupe store shared by every replica of an app, on Redis (``SET NX EX``).

    A claim is ``SET <prefix><key> processing NX EX <processing_ttl>``; completing it stores the
    ack for ``ttl`` seconds. ``processing_ttl`` bounds how long a replica that died mid-handler
    keeps others from retrying its message.

    Example:
        >>> store = RedisDedupeStore("redis://localhost:6379/0", ttl=600)  # doctest: +SKIP
        >>> client = dingsync.StreamClient(creds, route, dedupe=store)  # doctest: +SKIP
    """

    def __init__(
        self,
        redis: Union[str, Any],
        *,
        ttl: float = 600.0,
        prefix: str = "dingsync:dedupe:",
        processing_ttl: float = 120.0,
    ) -> None:
        if ttl <= 0 or processing_ttl <= 0:
            raise ConfigurationError("ttl and processing_ttl must be positive")
        from .ratelimit import redis_from

        # With the same timeouts as the token cache and the limiter: a silent Redis must not
        # hang a handler thread (a store failure runs the handler without dedupe).
        self.redis = redis_from(redis)
        self.ttl = ttl
        self.prefix = prefix
        self.processing_ttl = processing_ttl

    def __repr__(self) -> str:  # the client's repr may hold a password in its URL
        return f"RedisDedupeStore(prefix={self.prefix!r}, ttl={self.ttl!r})"

    def _keys(self, key: str) -> Tuple[str, str]:
        return f"{self.prefix}{key}", f"{self.prefix}attempts:{key}"

    def claim(self, key: str) -> Claim:
        """See :meth:`DedupeStore.claim`."""
        name, attempts_name = self._keys(key)
        ttl = max(1, int(self.processing_ttl))
        if self.redis.set(name, _PROCESSING_VALUE, nx=True, ex=ttl):
            pipe = self.redis.pipeline()
            pipe.incr(attempts_name)
            pipe.expire(attempts_name, max(1, int(self.ttl)))
            attempt, _ = pipe.execute()
            return Claim(NEW, attempt=int(attempt))
        value = self.redis.get(name)
        if value is None:  # expired between the two calls: try once more
            return self.claim(key)
        if isinstance(value, str):
            value = value.encode("utf-8")
        if value == _PROCESSING_VALUE:
            return Claim(PROCESSING)
        try:
            return Claim(DONE, Ack.from_wire(value))
        except ProtocolError:  # a foreign or corrupted value: treat as handled, never rerun
            return Claim(DONE)

    def complete(self, key: str, ack: Ack) -> None:
        """See :meth:`DedupeStore.complete`."""
        name, _ = self._keys(key)
        self.redis.set(name, ack.to_wire().encode("utf-8"), ex=max(1, int(self.ttl)))

    def release(self, key: str) -> None:
        """See :meth:`DedupeStore.release`."""
        name, _ = self._keys(key)
        value = self.redis.get(name)
        if value in (_PROCESSING_VALUE, _PROCESSING_VALUE.decode()):
            self.redis.delete(name)


class Deduper(Generic[W]):
    """How the client uses a :class:`DedupeStore`: it also holds back duplicates that arrive
    while the first copy still runs in this process, and hands them to the run that finishes.

    Store failures never cost a message: a failed claim runs the handler (a rare duplicate
    beats a loss), a failed complete() only means a later redelivery may run again.

    Example:
        >>> deduper = Deduper(MemoryDedupeStore())
        >>> deduper.claim("k", "first").state
        'new'
        >>> deduper.claim("k", "second") is None  # same message, still running here
        True
        >>> deduper.remember("k", Ack.ok("m1", None))
        >>> deduper.finish("k")
        ['second']
    """

    def __init__(self, store: DedupeStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._waiting: Dict[str, List[W]] = {}

    def claim(self, key: str, waiter: W) -> Optional[Claim]:
        """The store's claim, or None when ``key`` is running on another thread here (then
        ``waiter`` comes back from that run's :meth:`finish`). Every claim ends in finish()."""
        with self._lock:
            waiters = self._waiting.get(key)
            if waiters is not None:
                waiters.append(waiter)
                return None
            self._waiting[key] = []
        try:
            return self.store.claim(key)
        except Exception as exc:
            log.warning("dedupe store failed (%s); handling without dedupe", type(exc).__name__)
            return Claim(NEW)

    def remember(self, key: str, ack: Ack) -> None:
        """Keep a 200 ack for redeliveries; release anything else so that one runs again."""
        try:
            if ack.code == 200:
                self.store.complete(key, ack)
            else:
                self.store.release(key)
        except Exception as exc:
            log.warning("dedupe store failed (%s); a redelivery may run again", type(exc).__name__)

    def finish(self, key: str) -> List[W]:
        """End the local run of ``key``; returns the duplicates that waited for it."""
        with self._lock:
            return self._waiting.pop(key, [])
