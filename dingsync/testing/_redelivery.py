"""Redelivery of un-acked frames, and the emulator's one timer thread.

DingTalk pushes an EVENT or CALLBACK frame again (same messageId) when no 200 ack arrives in
time. Off by default: set ``redeliver_events_after`` / ``redeliver_callbacks_after`` (seconds of
real time). The timer thread (:class:`_Scheduler`) also runs the gateway's delayed closes (see
``disconnect()``); ``GatewayMixin`` starts it before the websocket server and stops it after.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

from ._records import Push, Redelivery

__all__ = ["RedeliveryMixin"]


class _Scheduler:
    """One timer thread for every delayed action (redelivery checks, delayed closes)."""

    def __init__(self) -> None:
        self._heap: List[Tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="dingsync-fake-timer", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    wait: Optional[float] = None
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            fn = heapq.heappop(self._heap)[2]
                            break
                    self._cond.wait(wait)
            try:
                fn()
            except Exception:  # noqa: S110 - one failing timer must not stop the others
                pass

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        self._thread.join(timeout=1.0)


class RedeliveryMixin:
    """The redelivery knobs, ``fake.redeliveries``, and the timer thread (``_call_later``)."""

    if TYPE_CHECKING:
        _gw_lock: threading.RLock
        _gw_cond: threading.Condition
        _gw_stopping: bool

        def now(self) -> float: ...

        def _route_locked(self, push: Push) -> None: ...

    def _init_redelivery(self) -> None:
        """Called by ``GatewayMixin._init_state``."""
        self.redeliver_events_after: Optional[float] = None
        self.redeliver_callbacks_after: Optional[float] = None
        self.redeliveries: List[Redelivery] = []
        self._scheduler: Optional[_Scheduler] = None

    def _start_timer(self) -> None:
        self._scheduler = _Scheduler()

    def _stop_timer(self) -> None:
        if self._scheduler is not None:
            self._scheduler.stop()
        self._scheduler = None

    def _call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the timer thread ``delay`` seconds from now (dropped when stopped)."""
        if self._scheduler is not None:
            self._scheduler.call_later(delay, fn)

    def _redeliver_after(self, type_: str) -> Optional[float]:
        if type_ == "EVENT":
            return self.redeliver_events_after
        if type_ == "CALLBACK":
            return self.redeliver_callbacks_after
        return None

    def _schedule_redelivery_locked(self, push: Push) -> None:
        """Called when ``push`` was written: check for its ack once the knob's delay is over."""
        after = self._redeliver_after(push.type)
        if after is not None:
            self._call_later(after, partial(self._maybe_redeliver, push, push.attempts))

    def _maybe_redeliver(self, push: Push, attempt: int) -> None:
        with self._gw_lock:
            if self._gw_stopping or push.acked or push.attempts != attempt or push.state != "sent":
                return
            push.attempts += 1
            self.redeliveries.append(
                Redelivery(push.message_id, push.attempts, self.now(), tuple(push.delivered_to))
            )
            push.target = None
            self._route_locked(push)
            self._gw_cond.notify_all()
