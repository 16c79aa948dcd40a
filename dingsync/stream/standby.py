"""The reader's stand-in: the reader runs a handler itself, and the stand-in reads for it
whenever that handler blocks.

Handing each frame to a handler thread costs more than most handlers do: the frame's objects
move to another core with the thread that handles it (benchmarks/, figure 1). So while no
handler thread is busy, the reader runs the handler itself. A handler may block, though (an HTTP
call), and reading must go on: pings answered, other frames handled, the connection watched.
The stand-in thread notices when one handler run on the reader has lasted ``after`` seconds,
then reads the connection in the reader's place and hands what it reads to the handler threads,
until that handler returns; if the connection fails meanwhile, it connects again. The reader
then waits for the stand-in's last read to end (at most ``recv_timeout``) and reads again.

When no handler has run on the reader for a whole period, the stand-in sleeps until the next
one, so an idle client costs no wake-ups.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

import attrs

from .connection import Connection

__all__ = ["Standby", "Rescue"]


@attrs.define
class Rescue:
    """What the stand-in met while it read in the reader's place."""

    # The connection to read next: the replacement after a SYSTEM disconnect, or the one the
    # stand-in opened after the old one failed.
    replacement: Optional[Connection] = None
    error: Optional[BaseException] = None  # reading failed and no new connection was made


#: ``read_for(conn, still_blocked)``: read ``conn`` while ``still_blocked()``, as the reader.
ReadFor = Callable[[Connection, Callable[[], bool]], Rescue]


class Standby:
    """Watches the handler runs of one reader (see the module docstring).

    The reader calls :meth:`begin` before running a handler itself and :meth:`end` after;
    ``end`` returns the :class:`Rescue` when the stand-in read meanwhile, else None.

    Example:
        >>> standby = Standby(lambda conn, blocked: Rescue(), after=0.01)
        >>> standby.begin(conn)  # doctest: +SKIP
        >>> standby.end() is None  # doctest: +SKIP
        True
        >>> standby.close()
    """

    def __init__(
        self,
        read_for: ReadFor,
        *,
        after: float = 0.01,
        name: str = "dingsync-standby",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._read_for = read_for
        self._after = after
        self._name = name
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rescue_ended = threading.Condition(self._lock)
        self._run = 0  # runs begun so far; the reader is the only writer
        self._conn: Optional[Connection] = None  # the running handler's connection, or None
        self._rescuing = False
        self._rescued = 0  # the last run the stand-in read for
        self._rescue: Optional[Rescue] = None
        self._wake = threading.Event()
        self._idle = True  # the stand-in sleeps until the next run begins
        self._closed = False
        self._thread: Optional[threading.Thread] = None

    @property
    def rescuing(self) -> bool:
        """Whether the stand-in is reading in the reader's place right now."""
        return self._rescuing

    def begin(self, conn: Connection) -> None:
        """The reader is about to run a handler for a frame of ``conn``."""
        self._run += 1
        self._conn = conn
        if self._idle:  # read after the run is published: see _watch()
            self._idle = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name=self._name, daemon=True)
                self._thread.start()
            self._wake.set()

    def end(self) -> Optional[Rescue]:
        """The handler returned: wait until the stand-in no longer reads, and say what it met."""
        with self._lock:
            self._conn = None
            while self._rescuing:
                self._rescue_ended.wait()
            rescue, self._rescue = self._rescue, None
        return rescue

    def close(self) -> None:
        """End the stand-in thread (it finishes a read in progress first)."""
        self._closed = True
        self._wake.set()

    def _watch(self) -> None:
        while not self._closed:
            seen, conn = self._run, self._conn
            self._sleep(self._after)
            if self._closed:
                return
            if self._run == seen and self._conn is None:
                self._sleep_until_next_run(seen)
                continue
            with self._lock:
                if conn is None or self._run != seen or self._conn is not conn:
                    continue  # that run ended, or it began during the period: look again
                if self._rescued == seen:
                    # Rescued once already: it ended only because the run is ending (or on
                    # stop). Another would read a connection the reader has left.
                    continue
                self._rescued = seen
                self._rescuing = True
            self._read_in_place(conn, seen)

    def _read_in_place(self, conn: Connection, run: int) -> None:
        rescue = Rescue()
        try:
            rescue = self._read_for(conn, lambda: self._run == run and self._conn is conn)
        except BaseException as exc:  # the reader raises it as its own
            rescue = Rescue(error=exc)
        finally:
            with self._lock:
                self._rescue = rescue
                self._rescuing = False
                self._rescue_ended.notify_all()

    def _sleep_until_next_run(self, seen: int) -> None:
        # Clear, then publish idle, then look again: a run that begins in between either sees
        # _idle (and wakes us) or is seen here, so no run goes unwatched.
        self._wake.clear()
        self._idle = True
        if self._run != seen or self._conn is not None or self._closed:
            self._idle = False
            return
        self._wake.wait()
