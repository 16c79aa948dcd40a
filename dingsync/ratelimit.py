"""Rate limiters for sends that DingTalk caps per minute (custom robots: 20 messages a minute).

A limiter hands out ``limit`` slots per ``period`` seconds for each key. It is a token bucket
whose tokens come back exactly ``period`` seconds after they were spent (a sliding window),
because DingTalk counts messages over the last minute: a classic refill-at-a-steady-rate bucket
would allow a full burst plus the refill inside one minute, which is precisely what earns the
10-minute penalty. A key can also be *penalized*: no slot is handed out until the penalty ends.

Two backends share one interface:

* :class:`MemoryRateLimiter`: one process (the default).
* :class:`RedisRateLimiter`: a Lua script on Redis, shared by every process and machine that
  points at the same server, so ten cron jobs posting to one robot still stay under the cap.

Clock and sleep are injectable, so tests run in fake time.

Example:
    >>> limiter = MemoryRateLimiter(limit=2, period=60.0)
    >>> limiter.try_acquire("robot"), limiter.try_acquire("robot"), limiter.try_acquire("robot") > 0
    (0.0, 0.0, True)
"""

from __future__ import annotations

import abc
import logging
import math
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Optional, Union

from .errors import ConfigurationError

if TYPE_CHECKING:
    import redis

__all__ = ["RateLimiter", "MemoryRateLimiter", "RedisRateLimiter", "redis_from"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Any]


def redis_from(client_or_url: Union[str, redis.Redis]) -> redis.Redis:
    """A ``redis.Redis`` client from a URL (``redis://host:6379/0``) or an existing client.

    Example:
        >>> redis_from("redis://127.0.0.1:6379/0")  # doctest: +SKIP
        Redis<ConnectionPool<Connection<host=127.0.0.1,port=6379,db=0>>>
    """
    if not isinstance(client_or_url, str):
        return client_or_url
    try:
        import redis as redis_lib
    except ImportError as exc:
        raise ConfigurationError(
            "the Redis backends need the redis package: pip install 'dingsync[redis]'"
        ) from exc
    return redis_lib.Redis.from_url(client_or_url)


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

    def wait_for_slot(self, key: str, *, max_wait: Optional[float] = None) -> float:
        """Take a slot, sleeping until one is free, but never longer than ``max_wait`` in all.

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


# Times travel as integer milliseconds of the *caller's* clock, so every process must agree on
# the wall clock (NTP); in exchange tests can drive the limiter with a fake clock.
_ACQUIRE = """
local now = tonumber(ARGV[1])
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

_PENALIZE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local until_ms = tonumber(ARGV[1])
if until_ms > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""


class RedisRateLimiter(RateLimiter):
    """A limiter shared through Redis by every process and machine using the same server.

    Args:
        redis_client_or_url: a ``redis.Redis`` client or a ``redis://`` URL.
        limit: slots per ``period``.
        period: the window in seconds.
        prefix: key prefix in Redis.
        clock: wall-clock seconds (shared across machines, so not monotonic).
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
        period: float = 60.0,
        prefix: str = "dingsync:ratelimit:",
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(limit=limit, period=period, clock=clock, sleep=sleep)
        self._redis = redis_from(redis_client_or_url)
        self._prefix = prefix
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._penalize = self._redis.register_script(_PENALIZE)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def try_acquire(self, key: str) -> float:
        now = self._now_ms()
        member = f"{now}-{uuid.uuid4().hex}"
        wait_ms = self._acquire(
            keys=[self._prefix + key, self._prefix + key + ":penalty"],
            args=[now, int(math.ceil(self.period * 1000)), self.limit, member],
        )
        return max(0.0, int(wait_ms) / 1000.0)

    def penalize(self, key: str, seconds: float) -> None:
        until = self._now_ms() + int(seconds * 1000)
        self._penalize(
            keys=[self._prefix + key + ":penalty"], args=[until, max(1, int(seconds * 1000))]
        )

    def penalty_remaining(self, key: str) -> float:
        raw = self._redis.get(self._prefix + key + ":penalty")
        if raw is None:
            return 0.0
        return max(0.0, (int(raw) - self._now_ms()) / 1000.0)

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter(limit={self.limit}, period={self.period}, prefix={self._prefix!r})"
        )
