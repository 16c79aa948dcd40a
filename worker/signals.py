"""SIGINT/SIGTERM handling for the worker: the first signal asks for a drain, the second for a
hard stop.

The handlers only record what happened. Everything else (logging, stopping the client) happens in
the main loop that polls :class:`ShutdownRequest`, because a signal handler runs between two
bytecodes of the main thread: taking a lock there (``Event.set``, a logging handler) can deadlock
against the code it interrupted.

Example:
    >>> import os, signal
    >>> request = ShutdownRequest()
    >>> with capture_signals(request) as installed:
    ...     os.kill(os.getpid(), signal.SIGTERM)
    ...     installed, request.drain, request.hard, request.reason
    (True, True, False, 'SIGTERM')
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Any, Dict, Iterator, Optional, Sequence

__all__ = ["ShutdownRequest", "capture_signals", "HANDLED_SIGNALS"]

#: The signals that stop the worker. SIGBREAK (Windows' Ctrl+Break) is added where it exists.
HANDLED_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM) + (
    (signal.Signals["SIGBREAK"],) if hasattr(signal, "SIGBREAK") else ()
)


class ShutdownRequest:
    """Why and how hard the worker was asked to stop.

    Written by signal handlers (and by the worker's own timers), read by the main loop. Plain
    attribute writes are atomic under the GIL, so no lock is needed, and none may be taken.

    Example:
        >>> r = ShutdownRequest()
        >>> r.request("max-runtime"); r.drain, r.hard
        (True, False)
        >>> r.request("SIGINT"); r.hard, r.reason
        (True, 'SIGINT')
    """

    def __init__(self) -> None:
        self.count = 0
        self.reason: Optional[str] = None
        self.last_signal: Optional[int] = None

    @property
    def drain(self) -> bool:
        """A stop was requested: take no new messages, finish the running ones."""
        return self.count >= 1

    @property
    def hard(self) -> bool:
        """A second stop was requested: stop now, without waiting for handlers."""
        return self.count >= 2

    def request(self, reason: str, signum: Optional[int] = None) -> None:
        """Record one stop request; the second one escalates to a hard stop."""
        self.count += 1
        self.reason = reason
        if signum is not None:
            self.last_signal = signum


@contextmanager
def capture_signals(
    request: ShutdownRequest, signals: Sequence[int] = HANDLED_SIGNALS
) -> Iterator[bool]:
    """Route ``signals`` to ``request`` for the duration of the block, then restore the old
    handlers.

    Python only lets the main thread install signal handlers; elsewhere (a worker embedded in a
    thread, a test runner) nothing is installed and the block runs with the caller's handlers.

    Yields:
        True when the handlers were installed.

    Example:
        >>> import signal
        >>> before = signal.getsignal(signal.SIGTERM)
        >>> with capture_signals(ShutdownRequest()):
        ...     pass
        >>> signal.getsignal(signal.SIGTERM) is before
        True
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return

    def handle(signum: int, _frame: Optional[FrameType]) -> None:
        request.request(signal.Signals(signum).name, signum)

    previous: Dict[int, Any] = {}
    try:
        for sig in signals:
            previous[sig] = signal.signal(sig, handle)
        yield True
    finally:
        for sig, handler in previous.items():
            # None means the old handler was not installed from Python; the default is the
            # closest thing we can put back.
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
