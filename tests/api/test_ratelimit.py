"""Rate limiters: sliding-window token buckets in memory and in Redis, with penalties."""

from __future__ import annotations

import threading
from typing import Any, List

import pytest

from dingsync.errors import ConfigurationError
from dingsync.ratelimit import MemoryRateLimiter, RedisRateLimiter


class FakeTime:
    """A clock whose sleep moves time forward (thread-safe)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.slept: List[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


def max_in_window(times: List[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


def test_memory_limiter_hands_out_limit_slots_per_period() -> None:
    """The 21st slot waits until the first one is a full period old."""
    t = FakeTime()
    limiter = MemoryRateLimiter(limit=20, period=60.0, clock=t.clock, sleep=t.sleep)
    assert all(limiter.try_acquire("r") == 0.0 for _ in range(20))
    t.now += 10
    assert limiter.try_acquire("r") == pytest.approx(50.0)
    assert limiter.try_acquire("other") == 0.0


def test_never_more_than_limit_in_any_window() -> None:
    """Blocking acquisitions stay under the cap in every sliding window (not just on average)."""
    t = FakeTime()
    limiter = MemoryRateLimiter(limit=20, period=60.0, clock=t.clock, sleep=t.sleep)
    stamps = []
    for _ in range(100):
        limiter.acquire("r")
        stamps.append(t.now)
        t.now += 0.5
    assert max_in_window(stamps, 60.0) == 20


def test_penalty_blocks_until_it_ends() -> None:
    """A penalized key refuses slots for the penalty's length."""
    t = FakeTime()
    limiter = MemoryRateLimiter(clock=t.clock, sleep=t.sleep)
    limiter.penalize("r", 600)
    assert limiter.penalty_remaining("r") == 600
    assert limiter.wait_for_slot("r", max_wait=60) == pytest.approx(600)
    assert t.slept == []
    t.now += 600
    assert limiter.wait_for_slot("r", max_wait=60) == 0.0


def test_wait_for_slot_sleeps_within_max_wait() -> None:
    """A wait shorter than max_wait is slept through."""
    t = FakeTime()
    limiter = MemoryRateLimiter(limit=1, period=5.0, clock=t.clock, sleep=t.sleep)
    limiter.acquire("r")
    assert limiter.wait_for_slot("r", max_wait=10) == 0.0
    assert t.slept == [5.0]


@pytest.mark.parametrize("kwargs", [{"limit": 0}, {"limit": 1.5}, {"period": 0}])
def test_bad_configuration(kwargs: Any) -> None:
    """Limits must be positive integers, periods positive."""
    with pytest.raises(ConfigurationError):
        MemoryRateLimiter(**kwargs)


def test_redis_limiter_is_shared_between_instances(redis_url: str, redis_client: Any) -> None:
    """Two limiter objects (two processes in real life) share one budget."""
    t = FakeTime()
    first = RedisRateLimiter(redis_url, limit=20, period=60.0, clock=t.clock, sleep=t.sleep)
    second = RedisRateLimiter(redis_url, limit=20, period=60.0, clock=t.clock, sleep=t.sleep)
    stamps = []
    for i in range(50):
        (first if i % 2 else second).acquire("shared")
        stamps.append(t.now)
        t.now += 0.25
    assert max_in_window(stamps, 60.0) == 20
    assert len(stamps) == 50


def test_redis_penalty_is_shared(redis_url: str, redis_client: Any) -> None:
    """A penalty recorded by one instance stops the others."""
    t = FakeTime()
    first = RedisRateLimiter(redis_url, clock=t.clock, sleep=t.sleep, prefix="test:pen:")
    second = RedisRateLimiter(redis_url, clock=t.clock, sleep=t.sleep, prefix="test:pen:")
    first.penalize("robot", 600)
    assert second.penalty_remaining("robot") == pytest.approx(600)
    assert second.try_acquire("robot") == pytest.approx(600)
    t.now += 601
    assert second.try_acquire("robot") == 0.0


def test_redis_limiter_under_threads(redis_url: str, redis_client: Any) -> None:
    """Concurrent acquisitions through Redis never exceed the cap."""
    t = FakeTime()
    limiters = [
        RedisRateLimiter(
            redis_url, limit=5, period=10.0, clock=t.clock, sleep=t.sleep, prefix="thr:"
        )
        for _ in range(3)
    ]
    taken: List[float] = []
    lock = threading.Lock()

    def worker(limiter: RedisRateLimiter) -> None:
        for _ in range(5):
            if limiter.try_acquire("k") == 0.0:
                with lock:
                    taken.append(t.clock())

    threads = [threading.Thread(target=worker, args=(lim,)) for lim in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 5


def test_redis_limiter_defaults_to_a_61_s_window_on_the_servers_clock(
    redis_url: str, redis_client: Any
) -> None:
    """DingTalk's minute plus a second of slack, timed by Redis (one clock for all machines)."""
    limiter = RedisRateLimiter(redis_url, limit=1, prefix="srv:")
    assert limiter.period == 61.0
    assert limiter.try_acquire("k") == 0.0
    wait = limiter.try_acquire("k")
    assert 60.0 < wait <= 61.0
    seconds, micros = redis_client.time()
    server_ms = seconds * 1000 + micros // 1000
    ((_, stamp),) = redis_client.zrange("srv:k", 0, 0, withscores=True)
    assert abs(stamp - server_ms) < 1000
    limiter.penalize("k", 600)
    assert 599.0 < limiter.penalty_remaining("k") <= 600.0
