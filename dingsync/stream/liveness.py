"""Keeping connections honest (keepalive pings, the watchdog) and the health verdict.

A TCP connection can stay "open" for hours after the path to DingTalk died, and DingTalk keeps
routing pushes to it (user-pain P1): only traffic proves a connection alive.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import attrs

from .connection import Connection

__all__ = ["Counters", "Keepalive", "StreamStats", "assess"]

log = logging.getLogger("dingsync.stream")

_SLACK = 0.05  # seconds


@attrs.frozen(kw_only=True)
class StreamStats:
    """A snapshot of a StreamClient's counters (times are ``time.monotonic()`` values).

    Example:
        >>> client.stats.acks_sent  # doctest: +SKIP
        42
    """

    connections_opened: int = 0
    reconnects: int = 0
    frames_received: int = 0
    acks_sent: int = 0
    acks_lost: int = 0
    redeliveries_skipped: int = 0
    handler_errors: int = 0
    in_flight: int = 0
    last_frame_at: Optional[float] = None
    last_alive_at: Optional[float] = None
    connected: bool = False


class Counters:
    """A StreamClient's counters, updated from several threads under one lock.

    Example:
        >>> counters = Counters()
        >>> counters.add("acks_lost", 2)
        >>> counters.snapshot().acks_lost
        2
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Dict[str, Any] = attrs.asdict(StreamStats())

    def add(self, name: str, delta: int = 1) -> None:
        """Add ``delta`` to the counter ``name``."""
        with self._lock:
            self._values[name] += delta

    def frame(self, at: Optional[float]) -> None:
        """A frame arrived at ``at`` (one lock for both counters: this is per frame)."""
        with self._lock:
            self._values["frames_received"] += 1
            self._values["last_frame_at"] = at

    def at(self, name: str, when: Optional[float]) -> None:
        """Keep the latest time of ``name`` (``last_frame_at``, ``last_alive_at``)."""
        if when is not None:
            with self._lock:
                self._values[name] = max(self._values[name] or 0.0, when)

    def snapshot(self, **computed: Any) -> StreamStats:
        """The counters, with ``computed`` values (``in_flight``, ``connected``) set."""
        with self._lock:
            values = dict(self._values)
        return StreamStats(**{**values, **computed})


def assess(
    stats: StreamStats,
    *,
    now: float,
    dead_after: float,
    state: str = "running",
    last_error: Optional[BaseException] = None,
) -> Tuple[bool, Dict[str, Any]]:
    """Health from a stats snapshot: connected, and a frame or pong within ``dead_after``.

    Example:
        >>> assess(StreamStats(connected=True, last_alive_at=95.0), now=100.0, dead_after=25.0)[0]
        True
    """
    since = None if stats.last_alive_at is None else now - stats.last_alive_at
    healthy = stats.connected and since is not None and since <= dead_after
    details = attrs.asdict(stats)
    details.update(
        seconds_since_alive=since,
        state=state,
        last_error=None if last_error is None else str(last_error),
    )
    return healthy, details


class Keepalive:
    """The ``dingsync-keepalive`` thread, the one thread that acts on time: it pings a
    connection quiet for half an ``interval`` once an ``interval`` has passed since its last
    ping, aborts one silent for ``dead_after``, closes a retiring one at its ``retire_at``,
    and calls ``tick``, the client's own timed checks (the handler pool's growth, the drain),
    which returns when to call it again. It never waits for a lock a writer holds, and sleeps
    until the next thing is due.

    Example:
        >>> keepalive = Keepalive(lambda: [conn], interval=10.0, dead_after=25.0)
        >>> keepalive.start()  # doctest: +SKIP
        >>> keepalive.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        connections: Callable[[], Iterable[Connection]],
        *,
        interval: float,
        dead_after: float,
        clock: Callable[[], float] = time.monotonic,
        tick: Callable[[float], Optional[float]] = lambda now: None,
        name: str = "dingsync-keepalive",
    ) -> None:
        self._connections = connections
        self.interval = interval
        self.dead_after = dead_after
        self._clock = clock
        self._tick = tick
        self._stopped = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the ``dingsync-keepalive`` thread."""
        self._thread.start()

    def wake(self) -> None:
        """Look at the connections and call ``tick`` now."""
        self._wake.set()

    @property
    def running(self) -> bool:
        """Whether the thread runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it (at most ``timeout`` seconds)."""
        self._stopped = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopped:
            now = self._clock()
            due = self._tick(now)
            next_at = now + self.interval if due is None else min(due, now + self.interval)
            for conn in list(self._connections()):
                try:
                    next_at = min(next_at, self._look(conn, now))
                except Exception:  # the keepalive must outlive any surprise
                    log.exception("keepalive failed on connection #%d", conn.number)
            self._wake.wait(max(0.0, next_at - now))
            self._wake.clear()

    def _look(self, conn: Connection, now: float) -> float:
        """Ping or abort ``conn`` if due; returns when to look at it again."""
        if conn.closed:
            return now + self.interval
        if conn.retire_at is not None and now >= conn.retire_at:
            log.info("closing retired connection #%d: its grace is over", conn.number)
            conn.close("its disconnect grace is over")
            return now + self.interval
        alive = conn.last_alive or conn.opened_at
        if not conn.paused and now - alive > self.dead_after:
            log.warning(
                "connection #%d silent for %.1fs (dead_after=%gs); replacing it",
                conn.number,
                now - alive,
                self.dead_after,
            )
            conn.abort(f"no frame or pong for more than {self.dead_after}s")
            return now + self.interval
        half = self.interval / 2
        # A timed wait may end a hair early: a ping due within the slack goes out now, not
        # after a second wake-up.
        if now - conn.pinged_at >= self.interval - _SLACK and now - alive >= half:
            conn.ping()
        ping_at = max(conn.pinged_at + self.interval, alive + half)
        return min(ping_at, alive + self.dead_after + 0.01, conn.retire_at or ping_at)
