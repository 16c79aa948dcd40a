"""An injectable sleep that returns only when the test says so: tests decide exactly when a
monitor thread (the pool's, the reader's stand-in) looks, so nothing depends on timing."""

from __future__ import annotations

import threading

WAIT = 10.0


class Ticks:
    """``sleep`` blocks until :meth:`wake` (or :meth:`tick`); :meth:`free` ends the game."""

    def __init__(self) -> None:
        self._sleeping = threading.Semaphore(0)
        self._go = threading.Semaphore(0)
        self._free = False
        self.calls = 0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.calls += 1
        self.slept.append(seconds)
        self._sleeping.release()
        if not self._free:
            self._go.acquire()

    def wait_asleep(self) -> None:
        assert self._sleeping.acquire(timeout=WAIT), "the thread never went to sleep"

    def wake(self) -> None:
        """Let the sleeping thread look once."""
        self._go.release()

    def tick(self) -> None:
        """Let the sleeping thread look once; returns when it sleeps again."""
        self.wake()
        self.wait_asleep()

    def free(self) -> None:
        """From now on sleep() returns at once (the end of a test: the thread may finish)."""
        self._free = True
        self._go.release()
