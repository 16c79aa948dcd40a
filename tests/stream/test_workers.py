"""HandlerPool: how many handler threads run, and when more are started.

The monitor's sleep is injected (:class:`Ticks`), so each test decides exactly when the monitor
looks at the pool; nothing here depends on timing.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, List

import pytest

from dingsync.stream.workers import HandlerPool

from ._ticks import WAIT, Ticks


class Jobs:
    """Jobs by name: ``block:<x>`` waits for :meth:`release`, anything else returns at once."""

    def __init__(self) -> None:
        self.started: List[str] = []
        self.done: List[str] = []
        self.threads: set[str] = set()
        self._gates: dict[str, threading.Event] = {}
        self._cond = threading.Condition()

    def gate(self, name: str) -> threading.Event:
        with self._cond:
            return self._gates.setdefault(name, threading.Event())

    def run(self, job: str) -> None:
        with self._cond:
            self.started.append(job)
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()
        if job.startswith("block:"):
            assert self.gate(job).wait(WAIT), f"{job} was never released"
        with self._cond:
            self.done.append(job)
            self._cond.notify_all()

    def release(self, job: str) -> None:
        self.gate(job).set()

    def wait_for(self, predicate: Callable[[], bool]) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, WAIT), (self.started, self.done)


def drain(pool: HandlerPool) -> None:
    """Wait for every job (wait_idle() returns early whenever a job finishes)."""
    deadline = time.monotonic() + WAIT
    while not pool.wait_idle(0.1):
        assert time.monotonic() < deadline, f"{pool.in_flight} jobs still in flight"


def make_pool(jobs: Jobs, ticks: Ticks, *, threads: int, eager: int) -> HandlerPool:
    return HandlerPool(
        jobs.run, threads=threads, capacity=100, eager=eager, sleep=ticks.sleep, name="t-handler"
    )


def test_quick_jobs_run_on_the_eager_threads_only(ticks: Ticks) -> None:
    """A burst of jobs that never block starts `eager` threads, not `threads`: more would only
    take turns on the GIL."""
    jobs = Jobs()
    pool = make_pool(jobs, ticks, threads=16, eager=2)
    for i in range(500):
        assert pool.put(f"quick:{i}", WAIT)
    drain(pool)
    pool.close()
    assert len(jobs.done) == 500
    assert len(jobs.threads) <= 2
    assert all(name in {"t-handler-1", "t-handler-2"} for name in jobs.threads)


def test_blocked_handlers_get_threads_up_to_the_limit(ticks: Ticks) -> None:
    """When the running handlers finish nothing for a whole period while jobs wait, the
    monitor starts a thread for each waiting job, never more than `threads` in all."""
    jobs = Jobs()
    pool = make_pool(jobs, ticks, threads=5, eager=2)
    names = [f"block:{i}" for i in range(8)]
    for name in names:
        assert pool.put_nowait(name)
    ticks.wait_asleep()
    jobs.wait_for(lambda: len(jobs.started) == 2)  # the eager threads
    ticks.wake()  # nothing finished during the period: 3 more threads (the limit is 5)
    jobs.wait_for(lambda: len(jobs.started) == 5)
    assert len(jobs.threads) == 5
    for name in names:
        jobs.release(name)
    drain(pool)
    pool.close()
    assert sorted(jobs.done) == sorted(names)
    assert len(jobs.threads) == 5
    assert ticks.slept and all(s == pytest.approx(0.01) for s in ticks.slept)


def test_handlers_that_make_progress_get_no_new_thread(ticks: Ticks) -> None:
    """A job that finished during the period means the threads are not stuck: no new thread.
    The next period without progress starts one."""
    jobs = Jobs()
    pool = make_pool(jobs, ticks, threads=4, eager=1)
    for name in ("block:a", "block:b", "quick:c"):
        assert pool.put_nowait(name)
    ticks.wait_asleep()
    jobs.release("block:a")  # progress: a finishes, the one thread moves on to b and blocks
    jobs.wait_for(lambda: jobs.started == ["block:a", "block:b"])
    ticks.tick()
    assert jobs.threads == {"t-handler-1"} and "quick:c" not in jobs.started
    ticks.tick()  # a period without progress while c waits: a second thread runs c
    jobs.wait_for(lambda: "quick:c" in jobs.done)
    assert jobs.threads == {"t-handler-1", "t-handler-2"}
    jobs.release("block:b")
    drain(pool)
    pool.close()


def test_the_monitor_exits_when_the_pool_closes(ticks: Ticks) -> None:
    """close() ends the monitor thread too, even while jobs wait."""
    jobs = Jobs()
    pool = make_pool(jobs, ticks, threads=3, eager=1)
    for name in ("block:a", "block:b"):
        assert pool.put_nowait(name)
    ticks.wait_asleep()
    monitor = next(t for t in threading.enumerate() if t.name == "t-handler-monitor")
    pool.close()
    assert not pool.put_nowait("late")
    ticks.wake()  # the monitor finds the pool closed and returns
    monitor.join(WAIT)
    assert not monitor.is_alive()
    jobs.release("block:a")
    jobs.release("block:b")
    jobs.wait_for(lambda: len(jobs.done) == 2)
    assert jobs.threads == {"t-handler-1"}
