"""The AI card "typewriter": :class:`CardStream` streams text into one card variable.

It batches text chunks into one streaming update per ``interval`` seconds (DingTalk throttles
per-token updates with 403 QpsLimit), flushes pending text on a timer when the producer pauses,
drops (never retries) a throttled intermediate update so that the producer is not stalled, always
sends a final update, and marks the card failed when the block raises or the final update fails.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Callable, Optional, Type

from ..errors import ConfigurationError, DingSyncError
from ._envelopes import should_retry

if TYPE_CHECKING:
    from .cards import CardsApi

__all__ = ["CardStream"]

logger = logging.getLogger("dingsync.api.cards")


class CardStream:
    """Streams text into one card variable, coalescing updates; use it as a context manager.

    Pending text is flushed by a timer thread when no chunk follows (only with the default
    ``clock``: an injected clock does not follow real time, so call :meth:`flush` yourself).
    Thread-safe: ``append``/``set``/``flush``/``finish`` and the idle-flush timer take one lock,
    so ``finish()`` waits for an in-flight update and a late ``append()`` raises instead of
    losing its text. ``dropped`` counts intermediate updates given up (their text went out later).

    Example:
        >>> with CardStream(api.cards, "order-42", interval=0.3) as card:  # doctest: +SKIP
        ...     card.append("Hello, ")
        ...     card.append("world")
    """

    def __init__(
        self,
        cards: CardsApi,
        out_track_id: str,
        *,
        key: str = "content",
        interval: float = 0.5,
        full: bool = True,
        error_text: Optional[str] = None,
        clock: Callable[[], float] = time.monotonic,
        start: Optional[Callable[[], None]] = None,
    ) -> None:
        if interval < 0:
            raise ConfigurationError(f"interval must be >= 0, got {interval!r}")
        self.out_track_id = out_track_id
        self.key = key
        self.text = ""
        self.updates = 0
        self.dropped = 0
        self.finished = False
        self.failed = False
        self._cards = cards
        self._interval = interval
        self._full = full
        self._error_text = error_text
        self._clock = clock
        self._start = start
        self._sent = ""
        self._last: Optional[float] = None
        self._resync = False  # an append-mode update may or may not have landed: send in full
        self._timer_error: Optional[DingSyncError] = None
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._timer: Optional[threading.Thread] = None
        # the idle flush waits in real time, which an injected clock (tests) does not follow
        self._idle_flush = clock is time.monotonic

    def __enter__(self) -> CardStream:
        if self._start is not None:
            self._start()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self.finished:
            return
        if exc is None:
            self.finish()
            return
        try:
            self.fail()
        except Exception as secondary:
            # the caller's exception matters more than the failed attempt to report it
            logger.warning("could not mark card %s as failed: %s", self.out_track_id, secondary)

    def append(self, chunk: str) -> None:
        """Add text; an update goes out when ``interval`` has passed since the last one."""
        with self._lock:
            self._check_open()
            self.text += chunk
            self._maybe_flush()

    def set(self, text: str) -> None:
        """Replace the whole text."""
        with self._lock:
            self._check_open()
            self.text = text
            self._maybe_flush()

    def flush(self) -> None:
        """Send pending text now (one attempt; a failure leaves it pending)."""
        with self._lock:
            self._check_open()
            self._flush_pending()

    def finish(self) -> None:
        """Send the full text and end the stream (done automatically on leaving the block).

        If the final update fails, the card is marked failed (best effort) and the error raised:
        a card must not be left "streaming" forever.
        """
        with self._lock:
            self._check_open()
            self._stop_timer()
            try:
                self._send(finalize=True, error=False, force_full=True)
            except DingSyncError as exc:
                self.finished = True
                self.failed = True
                self._mark_failed_after(exc)
                raise
            self.finished = True

    def fail(self, note: Optional[str] = None) -> None:
        """End the stream and mark the card failed (done automatically when the block raises)."""
        with self._lock:
            self._check_open()
            self._stop_timer()
            extra = note if note is not None else self._error_text
            if extra:
                self.text = f"{self.text}\n\n{extra}" if self.text else extra
            self.finished = True
            self.failed = True
            self._send(finalize=True, error=True, force_full=True)

    def _mark_failed_after(self, error: DingSyncError) -> None:
        try:
            self._cards.stream(
                self.out_track_id,
                self.key,
                self.text,
                full=True,
                finalize=True,
                error=True,
                retry=False,
            )
        except DingSyncError as secondary:
            logger.warning(
                "the final update of card %s failed (%s) and marking it failed did too (%s)",
                self.out_track_id,
                type(error).__name__,
                type(secondary).__name__,
            )
        else:
            logger.warning(
                "the final update of card %s failed (%s); the card is marked failed",
                self.out_track_id,
                type(error).__name__,
            )

    def _check_open(self) -> None:
        if self._timer_error is not None:
            error, self._timer_error = self._timer_error, None
            raise error
        if self.finished:
            raise ConfigurationError(f"card stream {self.out_track_id} is already finished")

    def _due(self) -> bool:
        return self._last is None or self._clock() - self._last >= self._interval

    def _maybe_flush(self) -> None:
        if self._due():
            self._flush_pending()
        elif self.text != self._sent:
            self._start_timer()

    def _flush_pending(self) -> None:
        if self.text == self._sent:
            return
        try:
            self._send(finalize=False, error=False, once=True)
        except DingSyncError as exc:
            if not should_retry(exc, True):
                raise
            # a newer update will carry this text: waiting for this one would stall the producer
            self.dropped += 1
            self._last = self._clock()
            self._resync = self._resync or bool(getattr(exc, "maybe_sent", False))
            logger.info(
                "card %s: an update was dropped (%s); the next one carries its text",
                self.out_track_id,
                type(exc).__name__,
            )
            self._start_timer()

    # -- the idle flush -------------------------------------------------------------------------
    def _start_timer(self) -> None:
        if self._timer is None and self._interval > 0 and self._idle_flush:
            self._timer = threading.Thread(
                target=self._run_timer, name=f"dingsync-card-{self.out_track_id}", daemon=True
            )
            self._timer.start()
        self._wake.notify_all()

    def _stop_timer(self) -> None:
        self._timer = None  # the thread sees it is no longer the timer and returns
        self._wake.notify_all()

    def _run_timer(self) -> None:
        me = threading.current_thread()
        with self._lock:
            while self._timer is me and not self.finished:
                self._wake.wait(self._interval)
                if self._timer is not me or self.finished:
                    return
                if self.text != self._sent and self._due():
                    try:
                        self._flush_pending()
                    except DingSyncError as exc:
                        self._timer_error = exc  # raised by the producer's next call
                        return

    def _send(
        self, *, finalize: bool, error: bool, force_full: bool = False, once: bool = False
    ) -> None:
        appendable = (
            not self._full
            and not force_full
            and not self._resync
            and self.text.startswith(self._sent)
        )
        content = self.text[len(self._sent) :] if appendable else self.text
        self._cards.stream(
            self.out_track_id,
            self.key,
            content,
            full=not appendable,
            finalize=finalize,
            error=error,
            retry=not once,
        )
        self._sent = self.text
        self._resync = False
        self._last = self._clock()
        self.updates += 1

    def __repr__(self) -> str:
        return (
            f"CardStream(out_track_id={self.out_track_id!r}, key={self.key!r}, "
            f"updates={self.updates}, finished={self.finished})"
        )
