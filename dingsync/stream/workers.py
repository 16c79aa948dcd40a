"""The handler pool: up to ``size`` threads, started as jobs overlap, behind a queue of at most
``capacity`` jobs (a reader submitting one more waits: backpressure). A job never kills its
thread: whatever it raises, ``BaseException`` included, is logged and the thread goes on.
"""

from __future__ import annotations

import logging
import threading
from queue import SimpleQueue
from typing import Any, Callable, List, Optional

__all__ = ["HandlerPool"]

log = logging.getLogger("dingsync.stream")

_STOP = object()


class HandlerPool:
    """Runs ``run(job)`` on up to ``size`` threads (``<name>-1`` ...).

    ``on_idle`` is called (on a handler thread) whenever the last job in flight finishes.

    Example:
        >>> done = threading.Event()
        >>> pool = HandlerPool(lambda job: done.set(), size=2, capacity=4)
        >>> pool.submit("job"), done.wait(5.0)
        (True, True)
        >>> pool.close()
    """

    def __init__(
        self,
        run: Callable[[Any], None],
        *,
        size: int,
        capacity: int,
        name: str = "dingsync-handler",
        on_idle: Optional[Callable[[], None]] = None,
    ) -> None:
        self._run = run
        self._size = max(size, 1)
        self._capacity = max(capacity, self._size)
        self._name = name
        self._on_idle = on_idle
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._in_flight = 0  # queued or running; changed under _lock
        self._waiting = 0  # threads in submit(), changed under _lock
        self._threads: List[threading.Thread] = []
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Jobs queued or running right now."""
        return self._in_flight

    def submit(self, job: Any, *, give_up: Callable[[], bool] = lambda: False) -> bool:
        """Queue ``job``, waiting while the pool is full. False (the job is not queued) once
        the pool is closed, when ``give_up()`` turns true while waiting (checked whenever
        :meth:`wake` is called or a job finishes), or when no handler thread can be started."""
        with self._lock:
            while self._in_flight >= self._capacity and not self._closed and not give_up():
                self._waiting += 1
                try:
                    self._changed.wait()
                finally:
                    self._waiting -= 1
            if self._closed or self._in_flight >= self._capacity:
                return False
            if self._in_flight >= len(self._threads) < self._size:
                self._spawn()
                if not self._threads:
                    return False
            self._in_flight += 1
            self._queue.put(job)
        return True

    @property
    def full(self) -> bool:
        """Whether :meth:`submit` would wait right now."""
        return self._in_flight >= self._capacity

    def wake(self) -> None:
        """Wake every thread waiting in :meth:`submit` (to check ``give_up``)."""
        with self._lock:
            self._changed.notify_all()

    def close(self) -> None:
        """Take no more jobs; the threads exit once the queued jobs have run (not joined)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
            for _ in self._threads:
                self._queue.put(_STOP)

    def _spawn(self) -> None:  # under _lock
        number = len(self._threads) + 1
        thread = threading.Thread(target=self._work, name=f"{self._name}-{number}", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # the OS refused a thread: tried again on the next job
            log.error("cannot start handler thread %d: %s", number, exc)
            return
        self._threads.append(thread)

    def _work(self) -> None:
        get, run = self._queue.get, self._run
        while True:
            job = get()
            if job is _STOP:
                return
            try:
                run(job)
            except BaseException:  # a job must cost one message, never a handler thread
                log.exception("internal error in a handler thread")
            with self._lock:
                self._in_flight -= 1
                idle = not self._in_flight
                if self._waiting:
                    self._changed.notify_all()
            if idle and self._on_idle is not None:
                self._on_idle()
