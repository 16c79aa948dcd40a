"""Keeping connections honest: keepalive pings, the dead-connection watchdog, the reader
that drains a connection the gateway is retiring (make-before-break), and the health verdict
(:class:`StreamStats`, :func:`assess`).

Why all three: a TCP connection can stay "open" for hours after the path to DingTalk died, and
DingTalk keeps routing pushes to it (user-pain P1). Only traffic proves a connection alive, so
the client pings every ``ping_interval`` and replaces any connection that has shown no frame and
no pong for ``dead_after`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

import attrs

from ..errors import ConnectionClosed, DingSyncError, ProtocolError
from ..frames import Frame
from .connection import Connection

__all__ = [
    "Keepalive",
    "RetiringReader",
    "StreamStats",
    "assess",
    "is_dead",
    "make_before_break",
]

log = logging.getLogger("dingsync.stream")


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
    redeliveries_skipped: int = 0
    handler_errors: int = 0
    in_flight: int = 0
    last_frame_at: Optional[float] = None
    last_alive_at: Optional[float] = None
    connected: bool = False


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


def is_dead(conn: Connection, now: float, dead_after: float) -> bool:
    """Whether ``conn`` has been silent (no frame, no pong) for longer than ``dead_after``.

    A connection whose reader is paused by backpressure is never declared dead: it is the
    client, not the network, that stopped reading.

    Example:
        >>> is_dead(conn, time.monotonic(), 25.0)  # doctest: +SKIP
        False
    """
    return not conn.paused and conn.silent_for(now) > dead_after


class Keepalive:
    """The ``dingsync-keepalive`` thread: pings the current connection every ``interval``
    seconds and shuts down one the watchdog finds dead, which wakes its reader at once.

    Example:
        >>> keepalive = Keepalive(lambda: client_connection, interval=10.0, dead_after=25.0)
        >>> keepalive.start()  # doctest: +SKIP
        >>> keepalive.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        current: Callable[[], Optional[Connection]],
        *,
        interval: float,
        dead_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._current = current
        self.interval = interval
        self.dead_after = dead_after
        self._clock = clock
        self._stopped = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start the ``dingsync-keepalive`` thread."""
        self._thread = threading.Thread(target=self._run, name="dingsync-keepalive", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop pinging and wait for the thread (at most ``timeout`` seconds)."""
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            conn = self._current()
            if conn is None or conn.closed:
                continue
            if is_dead(conn, self._clock(), self.dead_after):
                log.warning(
                    "connection #%d silent for %.1fs (dead_after=%gs); replacing it",
                    conn.number,
                    conn.silent_for(self._clock()),
                    self.dead_after,
                )
                conn.abort(f"no frame or pong for more than {self.dead_after}s")
                continue
            try:
                conn.ping()
            except ConnectionClosed as exc:
                log.info("keepalive ping failed (%s); the reader will reconnect", exc)
                conn.abort("keepalive ping failed")
            except Exception:  # the keepalive thread must outlive any surprise
                log.exception("keepalive ping failed unexpectedly")


class RetiringReader:
    """Reads a connection the gateway asked to leave, until it closes or ``grace`` passes.

    DingTalk sends SYSTEM ``disconnect`` and closes the socket about 10 s later; pushes routed
    to it in between would be lost if nobody read them. The client opens the replacement first,
    then hands the old connection to this reader (thread ``dingsync-reader-retiring``), whose
    frames go through the same ``on_frame`` as the main reader's.

    Example:
        >>> RetiringReader(old, on_frame=client_handle, grace=15.0).start()  # doctest: +SKIP
    """

    def __init__(
        self,
        conn: Connection,
        *,
        on_frame: Callable[[bytes, Connection], object],
        grace: float,
        stopping: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = conn
        self._on_frame = on_frame
        self.grace = grace
        self._stopping = stopping
        self._clock = clock
        self._thread = threading.Thread(
            target=self._run, name="dingsync-reader-retiring", daemon=True
        )

    def start(self) -> RetiringReader:
        """Start reading on the ``dingsync-reader-retiring`` thread; returns self."""
        self._thread.start()
        return self

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait until the old connection is closed."""
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        """Whether the old connection is still being read."""
        return self._thread.is_alive()

    def _run(self) -> None:
        conn = self.conn
        deadline = self._clock() + self.grace
        try:
            while not self._stopping.is_set() and self._clock() < deadline:
                raw = conn.recv()
                if raw is not None:
                    self._on_frame(raw, conn)
            reason = "stopping" if self._stopping.is_set() else f"grace of {self.grace}s over"
            log.info("retired connection #%d closed by the client (%s)", conn.number, reason)
        except ConnectionClosed as exc:
            log.info("retired connection #%d is gone: %s", conn.number, exc)
        except Exception:
            log.exception("reader of retired connection #%d failed", conn.number)
        finally:
            conn.close()


def make_before_break(
    old: Connection,
    disconnect: Frame,
    *,
    open_new: Callable[[], Connection],
    on_frame: Callable[[bytes, Connection], object],
    grace: float,
    stopping: threading.Event,
    clock: Callable[[], float] = time.monotonic,
) -> Optional[Tuple[Connection, RetiringReader]]:
    """Answer SYSTEM ``disconnect`` on ``old``: open the replacement first, then hand ``old``
    to a :class:`RetiringReader`. Returns (new connection, its reader), or None when no
    replacement could be opened: ``old`` then stays in use until the gateway closes it, and
    that close takes the ordinary reconnect path.

    Example:
        >>> new, reader = make_before_break(conn, frame, open_new=opener,  # doctest: +SKIP
        ...     on_frame=handle, grace=15.0, stopping=threading.Event())
    """
    try:
        reason = str(disconnect.json().get("reason", "")) or "no reason given"
    except ProtocolError:
        reason = "no reason given"
    log.info(
        "gateway asked connection #%d to go (%s); opening its replacement first", old.number, reason
    )
    old.retiring = True
    try:
        new = open_new()
    except DingSyncError as exc:
        old.retiring = False
        log.warning("could not open a replacement (%s); staying on #%d", exc, old.number)
        return None
    reader = RetiringReader(old, on_frame=on_frame, grace=grace, stopping=stopping, clock=clock)
    return new, reader.start()
