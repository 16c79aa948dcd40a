"""One open gateway connection: its reader calls :meth:`Connection.recv`, any thread queues
acks with :meth:`Connection.send` (never waiting for the network), and its writer thread writes
each batch in one system call under the socket's timeout, ``dead_after``: a peer that takes no
bytes for that long is dead, and the acks it could not take are reported lost (DingTalk
delivers those messages again; dedupe answers them). No ack is written twice: a batch whose
write failed is counted lost, never resent.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from typing import Any, Callable, List, Optional

from ..errors import ConnectionClosed, TransportError
from .wsio import BINARY, CLOSE, PING, PONG, TEXT, FrameReader, Masker

__all__ = ["Connection"]

log = logging.getLogger("dingsync.stream")

_NORMAL_CLOSE = (1000).to_bytes(2, "big")


class Connection:
    """One open websocket, with its writer thread (started by :meth:`start`).

    ``last_alive`` is the monotonic time of the last frame or pong (None before the first);
    ``paused`` is set by the reader while it waits for a handler slot, so that silence then
    is not held against the connection. ``on_acks("acks_sent" or "acks_lost", count)`` is
    told how acks ended.

    Example:
        >>> conn = Connection(websocket.create_connection(url), number=1,  # doctest: +SKIP
        ...     endpoint=url, dead_after=25.0).start()
        >>> conn.send(Ack.ok("m1", None).to_wire())  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        ws: Any,
        *,
        number: int,
        endpoint: str,
        dead_after: float,
        clock: Callable[[], float] = time.monotonic,
        on_acks: Optional[Callable[[str, int], None]] = None,
        threads: str = "dingsync",
    ) -> None:
        sock = getattr(ws, "sock", None)
        if not isinstance(sock, socket.socket):
            raise TransportError("the connector returned no websocket-client WebSocket")
        self.number = number
        self.endpoint = endpoint
        self._sock = sock
        sock.settimeout(dead_after)  # the write deadline; reads wake only in total silence
        self._reader = FrameReader(sock)
        self._clock = clock
        self._on_acks = on_acks
        self._wire = threading.Lock()  # one writer of socket bytes at a time
        self._pings = Masker()  # used under _wire only
        self._queue = threading.Condition()  # guards everything below it
        self._acks: List[bytes] = []
        self._control: List[bytes] = []  # pongs, written before the acks
        self._closing = False  # close(): write what is queued, then the close frame
        self._closed = False
        self._writer = threading.Thread(
            target=self._write_loop, name=f"{threads}-writer-{number}", daemon=True
        )
        self.opened_at = clock()
        self.last_alive: Optional[float] = None
        self.pinged_at = self.opened_at
        self.paused = False
        self.retiring = False
        self.retire_at: Optional[float] = None  # the keepalive closes it then
        self.gateway_id: Optional[str] = None
        self.close_reason: Optional[str] = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "retiring" if self.retiring else "open"
        return f"<Connection #{self.number} {self.endpoint} {state}>"

    def start(self) -> Connection:
        """Start the writer thread; returns self.

        Raises:
            TransportError: the thread could not be started (the socket is closed).
        """
        try:
            self._writer.start()
        except RuntimeError as exc:
            self._sock.close()
            raise TransportError(f"cannot start the writer thread: {exc}") from exc
        return self

    @property
    def closed(self) -> bool:
        """True once closing, closed, aborted or broken: it takes no more acks."""
        return self._closed or self._closing

    def resume(self) -> None:
        """The reader reads again after backpressure: silence counts from now."""
        self.last_alive = self._clock()
        self.paused = False

    # -- the reader's side ---------------------------------------------------------------
    def recv(self) -> Optional[bytes]:
        """The next data frame's bytes, or None after a control frame or a quiet spell.

        Raises:
            ConnectionClosed: the peer closed the connection, or it failed or was aborted.
        """
        try:
            opcode, payload = self._reader.read()
        except socket.timeout:
            return None  # the keepalive, not the reader, decides when silence means dead
        except (OSError, ValueError) as exc:
            self.abort(f"read failed: {type(exc).__name__}: {exc}")
            raise ConnectionClosed(
                f"connection #{self.number} closed: {self.close_reason}"
            ) from exc
        self.last_alive = self._clock()
        if opcode == TEXT or opcode == BINARY:
            return payload
        if opcode == PING:
            with self._queue:
                self._control.append(payload)
                self._queue.notify()
        elif opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            reason = payload[2:].decode("utf-8", "replace")
            self.close(f"the gateway closed it (code {code}{', ' + reason if reason else ''})")
            raise ConnectionClosed(
                f"the gateway closed connection #{self.number} (code {code})",
                code=code,
                reason=reason or None,
            )
        return None

    # -- any thread ----------------------------------------------------------------------
    def send(self, text: str) -> bool:
        """Queue one text frame for the writer; False once the connection takes no more."""
        # A lone surrogate (from a "\ud800" escape in a frame, echoed in its ack) has no UTF-8
        # form; it can only sit inside a JSON string, where its \uXXXX escape means the same.
        payload = text.encode("utf-8", "backslashreplace")
        with self._queue:
            if self._closed or self._closing:
                return False
            self._acks.append(payload)
            if len(self._acks) == 1:
                self._queue.notify()
        return True

    def ping(self) -> bool:
        """Send a websocket ping unless that would wait: for the writer (busy writing) or
        for a peer whose socket takes no bytes right now. Returns whether it was sent."""
        if self.closed or not self._wire.acquire(blocking=False):
            return False
        try:
            if not _writable(self._sock):
                return False
            self._sock.sendall(self._pings.encode(PING, b""))
            self.pinged_at = self._clock()
            return True
        except (OSError, ValueError) as exc:
            self.abort(f"ping failed: {type(exc).__name__}")
            return False
        finally:
            self._wire.release()

    def close(self, reason: str) -> None:
        """Close politely without waiting: the writer writes what is queued, then the close
        frame, then shuts the socket down (which ends the reader's read)."""
        with self._queue:
            if self._closed or self._closing:
                return
            self._closing = True
            self.close_reason = reason
            self._queue.notify()

    def abort(self, reason: str) -> None:
        """Shut the socket down now; queued acks are reported lost."""
        with self._queue:
            if self._closed:
                return
            self._closed = True
            self.close_reason = self.close_reason or reason
            lost, self._acks = len(self._acks), []
            self._queue.notify()
        self._shutdown()
        self._report(0, lost, reason)

    def finish(self, timeout: float = 1.0) -> None:
        """The reader's last call: what is queued still goes out if the peer takes it within
        ``timeout``; then the writer is stopped and the socket freed."""
        writer = self._writer
        waits = writer.is_alive() and writer is not threading.current_thread()
        if not self._closed:
            self.close("its reader is done")
            if waits:
                writer.join(timeout)
        self.abort("its reader is done")
        if waits:
            writer.join(timeout)
        self._sock.close()

    # -- the writer ----------------------------------------------------------------------
    def _write_loop(self) -> None:
        masker = Masker()
        encode = masker.encode
        queue = self._queue
        while True:
            with queue:
                while not (self._acks or self._control or self._closing or self._closed):
                    queue.wait()
                if self._closed:
                    return
                acks, self._acks = self._acks, []
                control, self._control = self._control, []
                closing = self._closing
            try:
                frames = [encode(PONG, p) for p in control]
                frames += [encode(TEXT, p) for p in acks]
                if closing:
                    frames.append(encode(CLOSE, _NORMAL_CLOSE))
                with self._wire:
                    self._sock.sendall(b"".join(frames))
            except BaseException as exc:  # whatever it is, the reader must learn the socket died
                if not isinstance(exc, (OSError, ValueError)):
                    log.exception("the writer of connection #%d failed", self.number)
                with queue:
                    lost = len(acks) + len(self._acks)
                    self._acks, self._closed = [], True
                    self.close_reason = self.close_reason or f"write failed: {type(exc).__name__}"
                self._shutdown()
                self._report(0, lost, self.close_reason)
                return
            if acks:
                self._report(len(acks), 0, None)
            if closing:
                with queue:
                    self._closed = True
                self._shutdown()
                return

    def _shutdown(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # not connected any more: the reader finds out either way

    def _report(self, written: int, lost: int, reason: Optional[str]) -> None:
        if lost:
            log.warning(
                "connection #%d ended (%s) with %d ack(s) unwritten; DingTalk may deliver "
                "those messages again",
                self.number,
                reason,
                lost,
            )
        if self._on_acks is not None:
            for name, count in (("acks_sent", written), ("acks_lost", lost)):
                if count:
                    self._on_acks(name, count)


def _writable(sock: socket.socket) -> bool:
    if hasattr(select, "poll"):  # select() cannot watch descriptors above FD_SETSIZE
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        return bool(poller.poll(0))
    return bool(select.select([], [sock], [], 0)[1])
