"""The handler pool: threads behind a queue of at most ``capacity`` jobs (a reader submitting one
more waits: backpressure). A job never kills its thread: whatever it raises, ``BaseException``
included, is logged and the thread goes on.

Two threads start with the client; up to ``size`` start when handlers stall, that is when jobs
wait for a thread and none has finished for ``stall_after`` (10 ms): the keepalive, the client's
timer thread, looks (:meth:`HandlerPool.grow_if_stalled`) after the reader reports a backlog.
Why not more threads at once, or on the reader: quick handlers run no faster on more threads
(they take turns on the GIL, and a burst ran at half speed on 16), and a reader that waited
for each new thread to be scheduled answered the SYSTEM ping behind a burst late.
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

    ``on_idle`` is called (on a handler thread) whenever the last job in flight finishes;
    ``on_backlog`` (on the submitting thread) when jobs start to wait for a thread.

    Example:
        >>> done = threading.Event()
        >>> pool = HandlerPool(lambda job: done.set(), size=2, capacity=4)
        >>> pool.start()
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
        eager: int = 1,
        stall_after: float = 0.01,
        on_idle: Optional[Callable[[], None]] = None,
        on_backlog: Optional[Callable[[], None]] = None,
    ) -> None:
        self._run = run
        self._size = max(size, 1)
        self._capacity = max(capacity, self._size)
        self._name = name
        self._eager = min(max(eager, 1), self._size)
        self._stall_after = stall_after
        self._on_idle = on_idle
        self._on_backlog = on_backlog
        self._finished = 0  # jobs done, changed under _lock
        self._look: Optional[tuple[float, int]] = None  # a backlog seen: (when, _finished then)
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

    def start(self) -> None:
        """Start the first threads; one the OS refuses is logged and tried again later."""
        with self._lock:
            while len(self._threads) < self._eager and self._spawn():
                pass

    def submit(self, job: Any, *, give_up: Callable[[], bool] = lambda: False) -> bool:
        """Queue ``job``, waiting while the pool is full. False (the job is not queued) once
        the pool is closed, or when ``give_up()`` turns true while waiting (checked whenever
        :meth:`wake` is called or a job finishes)."""
        with self._lock:
            while self._in_flight >= self._capacity and not self._closed and not give_up():
                self._waiting += 1
                try:
                    self._changed.wait()
                finally:
                    self._waiting -= 1
            if self._closed or self._in_flight >= self._capacity:
                return False
            self._in_flight += 1
            self._queue.put(job)
            backlog = self._in_flight > len(self._threads) and self._look is None
            if backlog:
                self._look = (-1.0, self._finished)  # the next look starts the clock
        if backlog and self._on_backlog is not None:
            self._on_backlog()
        return True

    def grow_if_stalled(self, now: float) -> Optional[float]:
        """Start threads for the waiting jobs if none finished for ``stall_after``; returns
        when to look again (None: no backlog)."""
        with self._lock:
            look, waiting = self._look, self._in_flight - len(self._threads)
            if look is None or waiting <= 0 or self._closed:
                self._look = None
                return None
            since, finished = look
            if since < 0 or finished != self._finished:  # handlers make progress: wait
                self._look = (now, self._finished)
                return now + self._stall_after
            if now - since < self._stall_after:
                return since + self._stall_after
            # At most double: a handler that only lost the GIL for a while looks stalled too,
            # and quick handlers run slower on many threads.
            for _ in range(min(waiting, self._size - len(self._threads), len(self._threads) or 1)):
                if not self._spawn():  # logged; tried again in a second, not every 10 ms
                    self._look = (now, self._finished)
                    return now + 1.0
            if self._in_flight <= len(self._threads) or len(self._threads) >= self._size:
                self._look = None
                return None
            self._look = (now, self._finished)  # jobs still wait: look again
            return now + self._stall_after

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

    def _spawn(self) -> bool:  # under _lock
        number = len(self._threads) + 1
        thread = threading.Thread(target=self._work, name=f"{self._name}-{number}", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # the OS refused a thread: tried again at the next look
            log.error("cannot start handler thread %d: %s", number, exc)
            return False
        self._threads.append(thread)
        return True

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
                self._finished += 1
                idle = not self._in_flight
                if self._waiting:
                    self._changed.notify_all()
            if idle and self._on_idle is not None:
                self._on_idle()
