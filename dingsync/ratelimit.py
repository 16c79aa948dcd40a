"""Rate limiters for sends that DingTalk caps per minute (custom robots: 20 messages a minute).

A limiter hands out ``limit`` slots per ``period`` seconds for each key. It is a token bucket
whose tokens come back exactly ``period`` seconds after they were spent (a sliding window),
because DingTalk counts messages over the last minute: a classic refill-at-a-steady-rate bucket
would allow a full burst plus the refill inside one minute, which is precisely what earns the
10-minute penalty. A key can also be *penalized*: no slot is handed out until the penalty ends.

Three backends share one interface:

* :class:`MemoryRateLimiter`: one process.
* :class:`FileRateLimiter`: every process of this user on the machine, through a locked JSON file
  in the per-user cache directory (the default of :class:`~dingsync.WebhookRobot`), so 22 cron
  runs in a minute stay under the cap and later runs honour a penalty instead of calling.
* :class:`RedisRateLimiter`: a Lua script on Redis, shared by every process and machine that
  points at the same server.

When the store fails, the file limiter degrades to pacing within the process (one warning); the
Redis limiter raises :class:`~dingsync.errors.StoreUnavailable` (nothing is sent): pacing it
cannot check could earn every machine DingTalk's 10-minute penalty. A send retries that error
under its deadline, so a Redis restart of a second or two costs a short wait, not a message.

Clock and sleep are injectable, so tests run in fake time.

Example:
    >>> limiter = MemoryRateLimiter(limit=2, period=60.0)
    >>> limiter.try_acquire("robot"), limiter.try_acquire("robot"), limiter.try_acquire("robot") > 0
    (0.0, 0.0, True)
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterator, Optional, Union

from ._files import FileLock, read_json, user_cache_dir, write_json
from .errors import ConfigurationError, StoreUnavailable

if TYPE_CHECKING:
    import redis

__all__ = [
    "RateLimiter",
    "MemoryRateLimiter",
    "FileRateLimiter",
    "RedisRateLimiter",
    "redis_from",
    "redis_call",
    "REDIS_TIMEOUT",
    "SHARED_WINDOW",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Any]

#: the window of the shared limiters: DingTalk counts "a minute" on its own clock from when each
#: request arrives, so a second of slack keeps latency from pushing a 21st message into it
SHARED_WINDOW = 61.0


#: seconds every Redis call may take (connect and answer) on a client made from a URL
REDIS_TIMEOUT = 2.0
_LOUD_WAIT = 1.0


def redis_from(client_or_url: Union[str, redis.Redis]) -> redis.Redis:
    """A ``redis.Redis`` client from a URL (``redis://host:6379/0``) or an existing client.

    A client made from a URL gets ``REDIS_TIMEOUT`` as its connect and socket timeouts, so a
    silent Redis cannot hang a send. A client passed in is used as it is; one without a
    ``socket_timeout`` is logged once as a warning.

    Example:
        >>> redis_from("redis://127.0.0.1:6379/0")  # doctest: +SKIP
        Redis<ConnectionPool<Connection<host=127.0.0.1,port=6379,db=0>>>
    """
    if not isinstance(client_or_url, str):
        kwargs = getattr(getattr(client_or_url, "connection_pool", None), "connection_kwargs", {})
        if isinstance(kwargs, dict) and kwargs.get("socket_timeout") is None:
            logger.warning(
                "this redis client has no socket_timeout: a Redis that stops answering would "
                "hang every send; create it with socket_timeout=%.0f (or pass a URL)",
                REDIS_TIMEOUT,
            )
        return client_or_url
    try:
        import redis as redis_lib
    except ImportError as exc:
        from ._extras import missing_extra

        raise ConfigurationError(missing_extra("the Redis backends", "redis", exc)) from exc
    return redis_lib.Redis.from_url(
        client_or_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )


@contextlib.contextmanager
def redis_call(store: str) -> Iterator[None]:
    """Translate a Redis failure (down, timed out, refused) into :class:`StoreUnavailable`.

    Example:
        >>> with redis_call("rate limiter"):
        ...     pass
    """
    try:
        yield
    except Exception as exc:
        import redis as redis_lib

        if not isinstance(exc, (redis_lib.RedisError, OSError)):
            raise
        raise StoreUnavailable(
            f"the Redis {store} failed ({type(exc).__name__}: {exc})", store=store
        ) from exc


class RateLimiter(abc.ABC):
    """Base class: ``limit`` slots per ``period`` seconds per key, plus penalties.

    Subclasses implement :meth:`try_acquire`, :meth:`penalize` and :meth:`penalty_remaining`.
    """

    def __init__(self, *, limit: int, period: float, clock: Clock, sleep: Sleep) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"limit must be a positive integer, got {limit!r}")
        if period <= 0:
            raise ConfigurationError(f"period must be positive, got {period!r}")
        self.limit = limit
        self.period = float(period)
        self._clock = clock
        self._sleep = sleep

    @abc.abstractmethod
    def try_acquire(self, key: str) -> float:
        """Take a slot now if one is free.

        Returns:
            ``0.0`` when a slot was taken, otherwise the seconds until one frees up (no slot
            is taken then).
        """

    @abc.abstractmethod
    def penalize(self, key: str, seconds: float) -> None:
        """Refuse every slot of ``key`` for ``seconds`` (DingTalk's 10-minute throttle)."""

    @abc.abstractmethod
    def penalty_remaining(self, key: str) -> float:
        """Seconds left of the penalty on ``key`` (0.0 when there is none)."""

    def wait_for_slot(
        self,
        key: str,
        *,
        max_wait: Optional[float] = None,
        around_sleep: Optional[Callable[[Sleep, float], Any]] = None,
    ) -> float:
        """Take a slot, sleeping until one is free, but never longer than ``max_wait`` in all.

        ``around_sleep(sleep, seconds)``, when given, does each wait instead (a caller that
        counts its waits against a deadline).

        Returns:
            ``0.0`` when the slot was taken. Otherwise the wait that would still be needed:
            no slot was taken and the caller decides (``max_wait`` is never exceeded).

        Example:
            >>> limiter = MemoryRateLimiter(limit=1, period=60.0)
            >>> limiter.wait_for_slot("r"), limiter.wait_for_slot("r", max_wait=1.0) > 0
            (0.0, True)
        """
        waited = 0.0
        while True:
            needed = self.try_acquire(key)
            if needed <= 0:
                return 0.0
            if max_wait is not None and waited + needed > max_wait:
                return needed
            if needed > _LOUD_WAIT:
                logger.warning(
                    "waiting %.1f s for a free slot of %s (%d per %.0f s)",
                    needed,
                    key,
                    self.limit,
                    self.period,
                )
            if around_sleep is not None:
                around_sleep(self._sleep, needed)
            else:
                self._sleep(needed)
            waited += needed

    def acquire(self, key: str) -> None:
        """Take a slot, sleeping as long as needed.

        Example:
            >>> MemoryRateLimiter(limit=20, period=60.0).acquire("robot")
        """
        self.wait_for_slot(key)


class MemoryRateLimiter(RateLimiter):
    """A per-process limiter; thread-safe.

    Args:
        limit: slots per ``period``.
        period: the window in seconds.
        clock: seconds, monotonic or wall; injectable for tests.
        sleep: how to wait; injectable for tests.

    Example:
        >>> limiter = MemoryRateLimiter(limit=20, period=60.0)
        >>> limiter.try_acquire("robot-a")
        0.0
    """

    def __init__(
        self,
        *,
        limit: int = 20,
        period: float = 60.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(limit=limit, period=period, clock=clock, sleep=sleep)
        self._lock = threading.Lock()
        self._spent: Dict[str, Deque[float]] = {}
        self._penalties: Dict[str, float] = {}

    def try_acquire(self, key: str) -> float:
        with self._lock:
            now = self._clock()
            penalty = self._penalties.get(key, 0.0) - now
            if penalty > 0:
                return penalty
            spent = self._spent.setdefault(key, deque())
            while spent and spent[0] <= now - self.period:
                spent.popleft()
            if len(spent) < self.limit:
                spent.append(now)
                return 0.0
            return spent[0] + self.period - now

    def penalize(self, key: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            self._penalties[key] = max(self._penalties.get(key, 0.0), until)

    def penalty_remaining(self, key: str) -> float:
        with self._lock:
            return max(0.0, self._penalties.get(key, 0.0) - self._clock())

    def __repr__(self) -> str:
        return f"MemoryRateLimiter(limit={self.limit}, period={self.period})"


class FileRateLimiter(RateLimiter):
    """A limiter shared by every process of this user on the machine, through a JSON file.

    Each change takes an exclusive ``flock`` on ``<path>.lock`` and rewrites the file atomically.
    Slots and penalties are stored in wall-clock seconds, which the processes of one machine
    share. If the file cannot be written (a read-only disk), the limiter falls back to pacing
    within this process, with one warning; a file owned by another user is refused.

    Args:
        path: the JSON file; default ``ratelimit.json`` in the per-user cache directory (see
            :class:`~dingsync.FileTokenCache`).
        limit: slots per ``period``.
        period: the window in seconds.
        clock: wall-clock seconds; injectable for tests.
        sleep: how to wait; injectable for tests.

    Example:
        >>> limiter = FileRateLimiter("/tmp/dingsync-doctest-pacing.json", limit=20)
        >>> limiter.penalty_remaining("nobody")
        0.0
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str], None] = None,
        *,
        limit: int = 20,
        period: float = SHARED_WINDOW,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(limit=limit, period=period, clock=clock, sleep=sleep)
        self.path = (
            os.fspath(path)
            if path is not None
            else os.path.join(user_cache_dir(), "ratelimit.json")
        )
        self._file_lock = FileLock(self.path + ".lock")
        self._fallback: Optional[MemoryRateLimiter] = None

    def _change(
        self,
        key: str,
        change: Callable[[Dict[str, Any], float], float],
        fallback: Callable[[MemoryRateLimiter], float],
    ) -> float:
        """Apply ``change(entry, now)`` to ``key``'s entry under the file lock; its result.

        Once the file has failed, ``fallback(memory_limiter)`` answers instead.
        """
        if self._fallback is None:
            try:
                with self._file_lock:
                    data = read_json(self.path)
                    now = self._clock()
                    entry = data.get(key)
                    entry = dict(entry) if isinstance(entry, dict) else {}
                    result = change(entry, now)
                    data[key] = entry
                    write_json(self.path, self._pruned(data, now))
                    return result
            except OSError as exc:
                logger.warning(
                    "cannot use the pacing file %s (%s); pacing within this process only",
                    self.path,
                    exc,
                )
                self._fallback = MemoryRateLimiter(
                    limit=self.limit, period=self.period, clock=self._clock, sleep=self._sleep
                )
        return fallback(self._fallback)

    def _pruned(self, data: Dict[str, Any], now: float) -> Dict[str, Any]:
        """Entries with a slot or a penalty still running (the file does not grow forever)."""
        kept = {}
        for key, entry in data.items():
            if not isinstance(entry, dict):
                continue
            spent = [t for t in entry.get("spent", ()) if isinstance(t, (int, float))]
            penalty = entry.get("penalty", 0.0)
            penalty = penalty if isinstance(penalty, (int, float)) else 0.0
            spent = [t for t in spent if t > now - self.period]
            if spent or penalty > now:
                kept[key] = {"spent": spent, "penalty": penalty}
        return kept

    def _acquire_entry(self, entry: Dict[str, Any], now: float) -> float:
        penalty = entry.get("penalty", 0.0)
        if isinstance(penalty, (int, float)) and penalty > now:
            return float(penalty - now)
        spent = sorted(
            t
            for t in entry.get("spent", ())
            if isinstance(t, (int, float)) and t > now - self.period
        )
        entry["spent"] = spent
        if len(spent) < self.limit:
            spent.append(now)
            return 0.0
        return float(spent[0] + self.period - now)

    def _penalty_entry(self, entry: Dict[str, Any], now: float) -> float:
        penalty = entry.get("penalty", 0.0)
        return max(0.0, float(penalty) - now) if isinstance(penalty, (int, float)) else 0.0

    def try_acquire(self, key: str) -> float:
        return self._change(key, self._acquire_entry, lambda memory: memory.try_acquire(key))

    def penalize(self, key: str, seconds: float) -> None:
        def extend(entry: Dict[str, Any], now: float) -> float:
            current = entry.get("penalty", 0.0)
            current = current if isinstance(current, (int, float)) else 0.0
            entry["penalty"] = max(current, now + seconds)
            return 0.0

        def in_memory(memory: MemoryRateLimiter) -> float:
            memory.penalize(key, seconds)
            return 0.0

        self._change(key, extend, in_memory)

    def penalty_remaining(self, key: str) -> float:
        return self._change(key, self._penalty_entry, lambda memory: memory.penalty_remaining(key))

    def __repr__(self) -> str:
        return f"FileRateLimiter(path={self.path!r}, limit={self.limit}, period={self.period})"


# Times are integer milliseconds of Redis's own clock (``TIME``), the one clock every machine
# sharing the limiter agrees on; a caller-supplied time (ARGV[1] >= 0) is used instead when a
# clock was injected (tests drive the limiter with a fake clock).
_NOW = """
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

_ACQUIRE = (
    _NOW
    + """
local period = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local until_ms = tonumber(redis.call('GET', KEYS[2]) or '0')
if until_ms > now then
  return until_ms - now
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], period)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + period - now)
"""
)

_PENALIZE = (
    _NOW
    + """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local until_ms = now + tonumber(ARGV[2])
if until_ms > current then
  redis.call('SET', KEYS[1], until_ms, 'PX', ARGV[2])
end
return 1
"""
)

_PENALTY_LEFT = (
    _NOW
    + """
local until_ms = tonumber(redis.call('GET', KEYS[1]) or '0')
return math.max(0, until_ms - now)
"""
)


def _member() -> str:
    return os.urandom(16).hex()  # uuid4's randomness; uuid (and platform) cost 5 ms to import


class RedisRateLimiter(RateLimiter):
    """A limiter shared through Redis by every process and machine using the same server.

    A Redis failure raises :class:`~dingsync.errors.StoreUnavailable` before anything is sent
    (sends retry it within their deadline); see the module docstring for why it does not
    degrade.

    Args:
        redis_client_or_url: a ``redis.Redis`` client or a ``redis://`` URL.
        limit: slots per ``period``.
        period: the window in seconds.
        prefix: key prefix in Redis.
        clock: seconds; default: the Redis server's clock, so machines whose clocks disagree
            still share one window. Inject one only for tests.
        sleep: how to wait.

    Example:
        >>> limiter = RedisRateLimiter("redis://127.0.0.1:6379/0")  # doctest: +SKIP
        >>> limiter.acquire("robot-a")  # doctest: +SKIP
    """

    def __init__(
        self,
        redis_client_or_url: Union[str, redis.Redis],
        *,
        limit: int = 20,
        period: float = SHARED_WINDOW,
        prefix: str = "dingsync:ratelimit:",
        clock: Optional[Clock] = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(limit=limit, period=period, clock=clock or time.time, sleep=sleep)
        self._server_clock = clock is None
        self._redis = redis_from(redis_client_or_url)
        self._prefix = prefix
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._penalize = self._redis.register_script(_PENALIZE)
        self._penalty_left = self._redis.register_script(_PENALTY_LEFT)

    def _now_ms(self) -> int:
        """The injected clock in ms, or -1: "use the Redis server's clock"."""
        return -1 if self._server_clock else int(self._clock() * 1000)

    def try_acquire(self, key: str) -> float:
        with redis_call("rate limiter"):
            wait_ms = self._acquire(
                keys=[self._prefix + key, self._prefix + key + ":penalty"],
                args=[self._now_ms(), int(math.ceil(self.period * 1000)), self.limit, _member()],
            )
        return max(0.0, int(wait_ms) / 1000.0)

    def penalize(self, key: str, seconds: float) -> None:
        with redis_call("rate limiter"):
            self._penalize(
                keys=[self._prefix + key + ":penalty"],
                args=[self._now_ms(), max(1, int(seconds * 1000))],
            )

    def penalty_remaining(self, key: str) -> float:
        with redis_call("rate limiter"):
            left_ms = self._penalty_left(
                keys=[self._prefix + key + ":penalty"], args=[self._now_ms()]
            )
        return max(0.0, int(left_ms) / 1000.0)

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter(limit={self.limit}, period={self.period}, prefix={self._prefix!r})"
        )
