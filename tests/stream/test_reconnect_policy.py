"""ReconnectPolicy maths and its tenacity controller, with sleep and clock injected."""

from __future__ import annotations

import threading
from typing import List, Tuple

import pytest
import tenacity

from dingsync.config import ReconnectPolicy, StreamConfig
from dingsync.errors import AuthError, ConfigurationError, TransportError


class Time:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: List[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run(policy: ReconnectPolicy, error: Exception, t: Time, **kw: object) -> int:
    """Drive retrying() with an always-failing attempt; return the attempts made."""
    attempts = 0
    retrying = policy.retrying(
        threading.Event(),
        sleep=t.sleep,
        clock=t.clock,
        auth_errors=(AuthError,),
        **kw,  # type: ignore[arg-type]
    )
    with pytest.raises(tenacity.RetryError):
        for attempt in retrying:
            with attempt:
                attempts += 1
                raise error
    return attempts


def test_delay_doubles_up_to_max_plus_jitter() -> None:
    """initial * 2**(n-1), capped at max, plus uniform(0, jitter)."""
    policy = ReconnectPolicy(initial=0.5, max=4.0, jitter=1.0)
    assert [policy.delay(n, random=lambda: 0.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.delay(1, random=lambda: 0.5) == 1.0
    assert policy.delay(10_000, random=lambda: 0.0) == 4.0


def test_auth_failures_wait_at_least_auth_wait() -> None:
    policy = ReconnectPolicy(initial=1.0, jitter=0.0, auth_wait=60.0)
    assert policy.delay(1, auth=True) == 60.0
    assert policy.delay(1) == 1.0


def test_give_up_after_uses_the_injected_clock() -> None:
    """give_up_after counts seconds on the given clock, so tests need not wait; the last wait
    is cut short so that the last attempt is made at the deadline, not after it."""
    t = Time()
    policy = ReconnectPolicy(initial=1.0, max=8.0, jitter=0.0, give_up_after=20.0)
    attempts = run(policy, TransportError("down"), t)
    assert t.sleeps == [1.0, 2.0, 4.0, 8.0, 5.0]
    assert attempts == 6 and t.now == 20.0


def test_give_up_after_is_not_stretched_by_the_auth_wait() -> None:
    """Refused credentials wait auth_wait (a minute) between attempts, but never past the
    give-up deadline: a worker told to give up after 5 s gives up after 5 s."""
    t = Time()
    policy = ReconnectPolicy(jitter=0.0, auth_wait=60.0, give_up_after=5.0)
    attempts = run(policy, AuthError("bad secret"), t)
    assert t.sleeps == [5.0]
    assert attempts == 2 and t.now == 5.0


def test_max_attempts() -> None:
    t = Time()
    attempts = run(ReconnectPolicy(initial=0.1, jitter=0.0, max_attempts=3), TransportError("x"), t)
    assert attempts == 3 and len(t.sleeps) == 2


def test_auth_errors_use_auth_wait_and_are_announced() -> None:
    """Each auth failure waits auth_wait and before_sleep hears (error, failures, wait)."""
    t = Time()
    heard: List[Tuple[str, int, float]] = []
    policy = ReconnectPolicy(initial=1.0, jitter=0.0, auth_wait=30.0, max_attempts=3)
    run(
        policy,
        AuthError("refused"),
        t,
        before_sleep=lambda e, n, w: heard.append((type(e).__name__, n, w)),
    )
    assert heard == [("AuthError", 1, 30.0), ("AuthError", 2, 30.0)]


def test_a_set_stop_event_ends_retrying() -> None:
    """Once the stop event is set no further attempt is made."""
    stop = threading.Event()
    attempts = 0
    retrying = ReconnectPolicy(initial=0.01, jitter=0.0).retrying(stop, sleep=lambda s: None)
    with pytest.raises(tenacity.RetryError):
        for attempt in retrying:
            with attempt:
                attempts += 1
                stop.set()
                raise TransportError("down")
    assert attempts == 1


def test_errors_outside_retry_on_propagate() -> None:
    retrying = ReconnectPolicy().retrying(threading.Event(), retry_on=(TransportError,))
    with pytest.raises(KeyError):
        for attempt in retrying:
            with attempt:
                raise KeyError("bug")


def test_stream_config_validation() -> None:
    """Config mistakes fail at construction; the proxy (it may hold a password) is not shown."""
    with pytest.raises(ConfigurationError):
        StreamConfig(dead_after=1.0, ping_interval=2.0)
    with pytest.raises(ConfigurationError):
        StreamConfig(proxy="socks5://proxy:1080")
    with pytest.raises(ConfigurationError):
        ReconnectPolicy(initial=0)
    config = StreamConfig(proxy="http://user:hunter2@proxy:3128", dead_after=1.0)
    assert config.ping_interval == 0.48
    assert "hunter2" not in repr(config)
