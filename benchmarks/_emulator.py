"""The harness's view of the emulator (:class:`dingsync.testing.FakeDingTalk`).

The emulator runs in the harness process; clients connect to it over loopback. Bulk pushes use
its own machinery: frames are serialised up front (``prepare_chatbot``) and written by the
connection's sender thread (``push_many``), whose CPU it accounts in ``push_stats``. This module
adds cheap completion polling and the emulator process's CPU over a measurement window.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from dingsync.testing import FakeDingTalk


class BenchError(RuntimeError):
    """A benchmark could not run (a client did not connect, acks never came...)."""


def wait_until(predicate: Any, timeout: float, interval: float = 0.005) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class Burst:
    """A bulk push of pre-serialised frames and what the emulator measured while sending it."""

    def __init__(self, gateway: Gateway, count: int) -> None:
        fake = gateway.fake
        self._fake = fake
        frames = fake.prepare_chatbot(count, text="hello bench {i}")  # serialised before timing
        fake.reset_push_stats()
        self.process_cpu0 = time.process_time()
        self.started = fake.now()
        self.mids: List[str] = fake.push_many(frames)
        self.pushes = fake.pushes[-count:]  # the Push records, in push order
        self.finished: Optional[float] = None
        self.process_cpu = 0.0

    def wait_acked(self, timeout: float, interval: float = 0.002) -> float:
        """Wait until every frame of the burst is acked; returns the last ack's arrival time
        (emulator clock, like :attr:`started`)."""
        pushes = self.pushes
        deadline = time.monotonic() + timeout
        index = 0
        while True:
            while index < len(pushes) and pushes[index].acked:
                index += 1
            if index == len(pushes):
                break
            if time.monotonic() >= deadline:
                raise BenchError(f"only {index}/{len(pushes)} frames acked after {timeout:.0f} s")
            time.sleep(interval)
        self.process_cpu = time.process_time() - self.process_cpu0
        wanted = set(self.mids)
        acks = self._fake.acks[:]
        times = [a.received_at for a in acks if a.get("headers", {}).get("messageId") in wanted]
        self.finished = max(times)
        return self.finished

    @property
    def elapsed(self) -> float:
        assert self.finished is not None, "wait_acked() first"
        return self.finished - self.started

    def emulator_figures(self) -> Dict[str, float]:
        """Push rate and CPU of the emulator for this burst."""
        stats = self._fake.push_stats
        n = len(self.mids)
        return {
            "push_rate": stats.frames_per_second,
            "sender_cpu_us_per_frame": stats.sender_cpu_seconds / n * 1e6,
            "emulator_cpu_pct": self.process_cpu / self.elapsed * 100,
            "emulator_cpu_us_per_frame": self.process_cpu / n * 1e6,
        }


class Gateway:
    """A started emulator plus the helpers the figures use. Use as a context manager."""

    def __init__(self) -> None:
        self.fake = FakeDingTalk()
        self._ack_at: Dict[str, float] = {}  # messageId -> arrival of its first ack
        self._acks_seen = 0

    def __enter__(self) -> Gateway:
        self.fake.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.fake.stop()

    def env(self) -> Dict[str, str]:
        return dict(self.fake.env())

    def wait_connected(
        self, count: int = 1, timeout: float = 30.0, alive: Optional[Callable[[], bool]] = None
    ) -> None:
        """Wait for ``count`` usable connections; give up early when ``alive()`` turns false
        (the client process died)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.fake.wait_for_connections(count, timeout=0.25)
                return
            except TimeoutError:
                pass
            if alive is not None and not alive():
                raise BenchError("the client exited before it connected")
            if time.monotonic() >= deadline:
                raise BenchError(f"no client connection after {timeout:.0f} s")

    def live(self) -> int:
        """Open, non-draining, non-stalled connections right now."""
        return sum(1 for c in self.fake.live_connections if not c.draining and not c.stalled)

    def accepted(self) -> int:
        """Websocket connections accepted since the start."""
        return len(self.fake.connections)

    def burst(self, count: int) -> Burst:
        return Burst(self, count)

    def _scan_acks(self) -> None:
        new = self.fake.acks[self._acks_seen :]  # a slice of a list is atomic under the GIL
        self._acks_seen += len(new)
        for ack in new:
            headers = ack.get("headers")
            mid = headers.get("messageId") if isinstance(headers, dict) else None
            if isinstance(mid, str):
                self._ack_at.setdefault(mid, ack.received_at)

    def ack_at(self, mid: str) -> Optional[float]:
        """When the first ack of ``mid`` arrived (emulator clock), or None."""
        if mid not in self._ack_at:
            self._scan_acks()
        return self._ack_at.get(mid)

    def acked(self, mid: str) -> bool:
        return self.ack_at(mid) is not None

    def wait_acked(self, mids: Sequence[str], timeout: float) -> None:
        index = 0

        def done() -> bool:
            nonlocal index
            while index < len(mids) and self.acked(mids[index]):
                index += 1
            return index == len(mids)

        if not wait_until(done, timeout, 0.002):
            raise BenchError(f"only {index}/{len(mids)} frames acked after {timeout:.0f} s")
