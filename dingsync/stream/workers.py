"""The handler threads: long-lived workers on one ``queue.SimpleQueue``, bounded.

Cheaper than a ThreadPoolExecutor plus a semaphore: no Future per job, and no lock shared by
the reader and the workers on the way of a job. Each worker counts the jobs it finished in its
own slot (one writer each); the readers count the jobs they queued under a lock only readers
take; ``in_flight`` is the difference. A Condition is used only when a reader must wait for room
(backpressure) or ``stop()`` waits for the handlers to drain. At most ``capacity`` jobs are
queued or running at any time, so memory stays bounded however slow the handlers are; a reader
waiting for room is woken once a quarter of it is free again (not after every job, which would
cost a context switch per frame).

Threads are started as they are needed, and "needed" depends on what the handlers do. Up to
``eager`` threads start as soon as jobs wait. Beyond that, a monitor thread (started with the
first backlog) adds threads only when jobs wait and no job has finished for ``stall_after``
seconds: the running handlers are blocked (an HTTP call, a sleep), so more threads help. For
handlers that only compute, more threads would only take turns on the GIL, and with 16 of them
switching a burst ran at half speed (benchmarks/, figure 1).
"""

from __future__ import annotations

import logging
import threading
import time
from queue import SimpleQueue
from typing import Any, Callable, List, Optional

__all__ = ["HandlerPool"]

log = logging.getLogger("dingsync.stream")


class HandlerPool:
    """Up to ``threads`` workers (``<name>-1`` ...; started as needed) running ``run(job)``.

    ``eager`` threads start as soon as jobs wait; more start when the running ones have
    finished nothing for ``stall_after`` seconds while jobs wait (see the module docstring).

    Example:
        >>> done = []
        >>> pool = HandlerPool(done.append, threads=2, capacity=4)
        >>> pool.put_nowait("job")
        True
        >>> pool.wait_idle(5.0)
        True
        >>> pool.close(); done
        ['job']
    """

    def __init__(
        self,
        run: Callable[[Any], None],
        *,
        threads: int,
        capacity: int,
        name: str = "dingsync-handler",
        eager: int = 2,
        stall_after: float = 0.01,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._run = run
        self._max_threads = max(threads, 1)
        self._eager = min(max(eager, 1), self._max_threads)
        self._stall_after = stall_after
        self._sleep = sleep
        self._capacity = max(capacity, 1)
        self._low_water = self._capacity - max(1, self._capacity // 4)
        self._name = name
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._put_lock = threading.Lock()  # readers only (the reader, a retiring reader)
        self._submitted = 0  # written under _put_lock
        self._finished: List[int] = []  # one slot per worker, written by that worker only
        self._finished_seen = 0  # a reader's last sum of _finished (a lower bound)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._waiters = 0  # threads in put()/wait_idle(), changed under _lock
        self._threads: List[threading.Thread] = []
        self._closed = False
        self._backlog = threading.Event()  # jobs wait for a thread: the monitor watches
        self._monitor: Optional[threading.Thread] = None

    @property
    def in_flight(self) -> int:
        """Jobs queued or running right now."""
        return self._submitted - sum(self._finished)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_nowait(self, job: Any) -> bool:
        """Queue ``job`` if there is room; False when full (or closed: the job is dropped)."""
        with self._put_lock:
            if self._closed:
                return False
            submitted = self._submitted
            if submitted - self._finished_seen >= self._capacity:
                self._finished_seen = sum(self._finished)
                if submitted - self._finished_seen >= self._capacity:
                    return False
            self._submitted = submitted + 1
            if submitted - self._finished_seen >= len(self._threads) < self._max_threads:
                self._finished_seen = sum(self._finished)
                if submitted - self._finished_seen >= len(self._threads):
                    self._grow()
            self._queue.put(job)  # inside the lock: never after close()'s stop marks
        return True

    def put(self, job: Any, timeout: float) -> bool:
        """Queue ``job``, waiting up to ``timeout`` seconds for room; False if there was none."""
        self._wait(lambda: self.in_flight < self._capacity or self._closed, timeout)
        return self.put_nowait(job)

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds (or until :meth:`wake`) for no job left; returns
        whether none is left."""
        self._wait(lambda: not self.in_flight, timeout)
        return not self.in_flight

    def _wait(self, done: Callable[[], bool], timeout: float) -> None:
        with self._lock:
            self._waiters += 1  # before the check: a worker finishing now sees it and notifies
            try:
                if not done():
                    self._changed.wait(timeout)
            finally:
                self._waiters -= 1

    def wake(self) -> None:
        """Wake every thread waiting in :meth:`put` or :meth:`wait_idle`."""
        with self._lock:
            self._changed.notify_all()

    def close(self) -> None:
        """Take no more jobs; the threads exit once the queued jobs have run (not joined)."""
        with self._put_lock:
            if self._closed:
                return
            self._closed = True
            threads = len(self._threads)
        self.wake()
        self._backlog.set()  # the monitor sees _closed and exits
        for _ in range(threads):
            self._queue.put(_STOP)

    def _grow(self) -> None:  # under self._put_lock; a job waits and every thread is busy
        if len(self._threads) < self._eager:
            self._spawn()
        elif not self._backlog.is_set():
            if self._monitor is None:
                self._monitor = threading.Thread(
                    target=self._watch, name=f"{self._name}-monitor", daemon=True
                )
                self._monitor.start()
            self._backlog.set()

    def _watch(self) -> None:
        """The monitor: while jobs wait, add threads whenever none finished for a period."""
        while True:
            self._backlog.wait()
            finished = sum(self._finished)
            self._sleep(self._stall_after)
            with self._put_lock:
                if self._closed:
                    return
                waiting = self._submitted - sum(self._finished) - len(self._threads)
                if waiting <= 0:
                    self._backlog.clear()  # set again by the next put that finds a backlog
                    continue
                if sum(self._finished) != finished:
                    continue  # the handlers make progress: more threads would not help
                for _ in range(min(waiting, self._max_threads - len(self._threads))):
                    self._spawn()
                if len(self._threads) >= self._max_threads:
                    return

    def _spawn(self) -> None:  # under self._put_lock
        slot = len(self._threads)
        self._finished.append(0)
        thread = threading.Thread(
            target=self._worker, args=(slot,), name=f"{self._name}-{slot + 1}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _worker(self, slot: int) -> None:
        get, run, finished = self._queue.get, self._run, self._finished
        while True:
            job = get()
            if job is _STOP:
                return
            try:
                run(job)
            except BaseException:  # a bug here must cost one job, never a handler thread
                log.exception("internal error in a handler thread")
            finally:
                finished[slot] += 1  # this thread is the slot's only writer
                if self._waiters and self.in_flight <= self._low_water:
                    with self._lock:
                        self._changed.notify_all()


_STOP = object()
