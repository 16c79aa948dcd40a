"""Retries of one call: the policy (attempts, backoff, Retry-After) and the call's deadline.

Not public beyond :class:`RetryPolicy` (exported by :mod:`dingsync.api`): :class:`HttpCore`
and the webhook robot run every call through :func:`run_with_retries`.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any, Callable, Optional, TypeVar

import attrs

from ..errors import ConfigurationError, DingSyncError, RateLimited
from ._envelopes import should_retry

__all__ = ["RetryPolicy", "Budget", "DEFAULT_RETRY", "NO_RETRY", "run_with_retries"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Any]

_LOUD_WAIT = 1.0  # waits longer than this are logged as warnings: a silent stall looks like a hang
_EXHAUSTED = "_dingsync_retries_exhausted"  # set on an error whose own retry loop already ran


def _positive(_instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or value <= 0:
        raise ConfigurationError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How transient failures are retried: ``attempts`` in all, exponential backoff + jitter.

    The n-th retry waits ``min(initial * 2**(n-1), max) + uniform(0, jitter)`` seconds, or
    longer when DingTalk said how long to wait (``RateLimited.retry_after``, e.g. 60 s for a
    per-minute limit, honoured in full). No call takes longer than ``deadline`` seconds in all:
    a retry whose wait would pass it is not made, and the last error is raised instead.

    Example:
        >>> RetryPolicy(attempts=3, initial=1.0).attempts
        3
        >>> RetryPolicy(deadline=30.0).deadline
        30.0
    """

    attempts: int = attrs.field(default=4, validator=_positive)
    initial: float = attrs.field(default=0.5, validator=_positive)
    max: float = attrs.field(default=30.0, validator=_positive)
    jitter: float = 0.5
    deadline: float = attrs.field(default=90.0, validator=_positive)

    def delay(self, retry_number: int, error: Optional[BaseException]) -> float:
        """Seconds to wait before retry number ``retry_number`` (1-based)."""
        wait = float(min(self.initial * 2 ** (retry_number - 1), self.max))
        wait += random.uniform(0, self.jitter) if self.jitter > 0 else 0.0
        if isinstance(error, RateLimited) and error.retry_after:
            wait = max(wait, float(error.retry_after))
        return wait


class Budget:
    """The time one call has used against its deadline.

    Counts the real time spent outside sleeps plus the waits asked for, so that an injected
    no-op ``sleep`` (tests) uses up the budget exactly as a real one would.

    Example:
        >>> budget = Budget(10.0)
        >>> budget.sleep(lambda s: None, 4.0)
        >>> 5.9 < budget.left() <= 6.0
        True
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._start = time.monotonic()
        self._slept_for_real = 0.0
        self._waited = 0.0

    def used(self) -> float:
        return time.monotonic() - self._start - self._slept_for_real + self._waited

    def left(self) -> float:
        return self.limit - self.used()

    def sleep(self, sleep: Sleep, seconds: float) -> None:
        started = time.monotonic()
        sleep(seconds)
        self._slept_for_real += time.monotonic() - started
        self._waited += seconds


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)


def run_with_retries(
    fn: Callable[[], T], *, policy: RetryPolicy, idempotent: bool, budget: Budget, sleep: Sleep
) -> T:
    """Call ``fn`` until it succeeds, the error is not transient, or attempts or time run out."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except DingSyncError as exc:
            if (
                attempt >= policy.attempts
                or getattr(exc, _EXHAUSTED, False)
                or not should_retry(exc, idempotent)
            ):
                raise
            wait = policy.delay(attempt, exc)
            if wait > budget.left():
                logger.warning(
                    "giving up after %s: waiting %.1f s would pass the call's %.0f s deadline",
                    type(exc).__name__,
                    wait,
                    budget.limit,
                )
                raise
            log = logger.warning if wait > _LOUD_WAIT else logger.info
            log(
                "%s; retrying in %.1f s (attempt %d of %d)",
                _brief(exc),
                wait,
                attempt + 1,
                policy.attempts,
            )
            budget.sleep(sleep, wait)


def _brief(exc: BaseException) -> str:
    text = str(exc).split(". ", 1)[0]
    return f"{type(exc).__name__}: {text[:160]}"
