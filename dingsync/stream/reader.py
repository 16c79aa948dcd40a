"""The reader role (client.py's docstring): connect, read, reconnect with the
ReconnectPolicy's backoff, hand every frame on at once; make-before-break on ``disconnect``."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any, Callable, Iterator, List, Optional

import attrs

from ..config import Credentials, Endpoints, StreamConfig
from ..errors import (
    AuthError,
    ConnectionClosed,
    DingSyncError,
    GatewayOpenError,
    ProtocolError,
    ReconnectGaveUp,
    StreamError,
    TransportError,
)
from ..frames import Ack, Frame, FrameType, Topic, message_id_of
from ..routing import AckPolicy, Router
from .connection import Connection
from .gateway import Connector, open_connection, origin_stamp
from .liveness import Counters
from .workers import HandlerPool

__all__ = ["Reader"]

log = logging.getLogger("dingsync.stream")

# Failures worth another connection attempt; anything else is a bug and propagates.
_RETRY_ON = (TransportError, GatewayOpenError, ConnectionClosed, AuthError)


@attrs.define(eq=False)
class Reader:
    """Connects and reads for one StreamClient (see the module docstring).

    ``current`` is the connection being read; :meth:`open_connections` adds the retiring
    ones. ``first_attempt`` is set once the first connection attempt has ended, with
    ``first_failure`` holding the error when that attempt was refused for credentials.

    Example:
        >>> reader = client._reader  # StreamClient builds it  # doctest: +SKIP
        >>> reader.receive()  # blocks until stopped and drained  # doctest: +SKIP
    """

    credentials: Credentials
    endpoints: Endpoints
    router: Router
    config: StreamConfig
    pool: HandlerPool
    counters: Counters
    stopping: threading.Event
    clock: Callable[[], float] = time.monotonic
    sleep: Optional[Callable[[float], Any]] = None
    connector: Optional[Connector] = None
    http: Any = None  # the requests.Session of the gateway calls, set by the client
    threads: str = "dingsync"  # the start of this client's thread names
    current: Optional[Connection] = attrs.field(default=None, init=False)
    ever_connected: bool = attrs.field(default=False, init=False)
    first_attempt: threading.Event = attrs.field(factory=threading.Event, init=False)
    first_failure: Optional[BaseException] = attrs.field(default=None, init=False)
    last_error: Optional[BaseException] = attrs.field(default=None, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _connections: List[Connection] = attrs.field(factory=list, init=False)  # current + retiring
    _retiring_readers: List[threading.Thread] = attrs.field(factory=list, init=False)
    _numbers: Iterator[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _origin: Optional[str] = attrs.field(default=None, init=False)
    _healthy: bool = attrs.field(default=False, init=False)  # the session delivered a frame

    def receive(self) -> None:
        """Connect and read, reconnecting, until stopped; then read through the drain."""
        import tenacity

        while not self.stopping.is_set():
            retrying = self.config.reconnect.retrying(
                self.stopping,
                sleep=self.sleep,
                clock=self.clock,
                retry_on=_RETRY_ON,
                auth_errors=(AuthError,),
                fatal=self._fatal,
                before_sleep=self._announce_retry,
            )
            try:
                for attempt in retrying:
                    with attempt:
                        self._session()
            except tenacity.RetryError as exc:
                if self.stopping.is_set():
                    break
                attempts = exc.last_attempt.attempt_number
                cause = exc.last_attempt.exception()
                log.error("giving up after %d failed connection attempts: %s", attempts, cause)
                raise ReconnectGaveUp(
                    f"gave up after {attempts} failed connection attempts; last error: {cause}",
                    attempts=attempts,
                ) from cause
        conn = self.current
        if conn is not None:  # interrupted while reading it: it stays open for the drain
            self._read(conn)

    def _fatal(self, error: BaseException) -> bool:
        # Credentials refused before any connection ever opened: a typo, not an outage, and
        # the user of a plain script must hear it (nothing is logged without logging set up).
        if isinstance(error, AuthError) and not self.ever_connected:
            self.first_failure = error
            return True
        return False

    def _announce_retry(self, error: BaseException, failures: int, wait: float) -> None:
        self.last_error = error
        self.first_attempt.set()
        if isinstance(error, AuthError):
            log.error("%s; next attempt in %.0fs", error, wait)
        else:
            log.warning(
                "connection attempt %d failed (%s); retrying in %.1fs", failures, error, wait
            )

    def _session(self) -> None:
        """One connection (or a chain of make-before-break replacements) until it ends.

        Returns after a healthy session ended (the backoff restarts from zero) or when
        stopping; raises when the connection could not be opened or died without ever
        delivering a frame.
        """
        if self.stopping.is_set():
            return
        self._healthy = False
        conn = self._open(planned=False)
        try:
            self._read(conn)
        except (TransportError, StreamError) as exc:
            # Healthy: it delivered frames, or lived long enough to have been dead-checked.
            lived = self.clock() - conn.opened_at >= self.config.dead_after
            if not (self._healthy or lived):
                raise
            self.last_error = exc
            log.warning("%s; reconnecting", exc)

    def _open(self, *, planned: bool) -> Connection:
        if self._origin is None:
            self._origin = origin_stamp(self.endpoints.api)
        try:
            conn = open_connection(
                self.http,
                credentials=self.credentials,
                endpoints=self.endpoints,
                subscriptions=self.router.subscriptions(),
                config=self.config,
                number=next(self._numbers),
                origin=self._origin,
                connector=self.connector,
                clock=self.clock,
                on_acks=self.counters.add,
                threads=self.threads,
            )
        except BaseException as exc:
            if not self.ever_connected and self._fatal(exc):
                self.first_attempt.set()
            raise
        if self.ever_connected and not planned:
            self.counters.add("reconnects")
        self.counters.add("connections_opened")
        with self._lock:
            self._connections.append(conn)
            self.current = conn
        self.ever_connected = True
        self.first_attempt.set()
        self.last_error = None
        if self.stopping.is_set():  # stopped while it opened: the drain may be over already
            conn.close("stopping")
        return conn

    def open_connections(self) -> List[Connection]:
        with self._lock:
            return list(self._connections)

    def _read(self, conn: Connection, *, retiring: bool = False) -> None:
        """Read ``conn`` (and its replacements) until it closes: returns when stopping (or
        ``retiring``), raises ConnectionClosed otherwise (or whatever else went wrong)."""
        try:
            while True:
                raw = conn.recv()
                if raw is not None:
                    self._healthy = True
                    replacement = self._handle_raw(raw, conn)
                    if replacement is not None:
                        conn = replacement
        except KeyboardInterrupt:
            raise  # the connection stays open: run_forever reads it through the drain
        except BaseException as exc:
            self.forget(conn)
            if isinstance(exc, ConnectionClosed) and (retiring or self.stopping.is_set()):
                log.info("connection #%d is gone: %s", conn.number, exc)
                return
            if not isinstance(exc, DingSyncError):
                log.exception("unexpected error in the reader of connection #%d", conn.number)
                if retiring:
                    return
                raise TransportError(f"unexpected reader error: {type(exc).__name__}") from exc
            raise

    def forget(self, conn: Connection) -> None:
        """The reader is done with ``conn``: it leaves the client's books and is freed."""
        self.counters.at("last_alive_at", conn.last_alive)
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
            if self.current is conn:
                self.current = None
        conn.finish()

    def _handle_raw(self, raw: bytes, conn: Connection) -> Optional[Connection]:
        """Handle one frame read from ``conn``; returns the replacement after a disconnect."""
        self.counters.frame(conn.last_alive)
        try:
            frame = Frame.from_wire(raw)
        except ProtocolError as exc:
            mid = message_id_of(raw)
            log.warning(
                "skipped a malformed frame on connection #%d: %s%s",
                conn.number,
                exc,
                f" (message {mid}, answered 400)" if mid else "",
            )
            if mid:
                self.send_ack(conn, Ack.error(mid, 400, f"malformed frame: {exc.field}", {}))
            return None
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "frame %s %s message %s on connection #%d",
                frame.type,
                frame.topic,
                frame.message_id,
                conn.number,
            )
        if frame.type == FrameType.SYSTEM:
            if frame.topic == Topic.PING:
                self.send_ack(conn, Ack.ok(frame.message_id, frame.data))
            elif frame.topic == Topic.DISCONNECT:
                return self._replace(frame, conn)
            else:
                log.debug("ignored SYSTEM topic %s", frame.topic)
            return None
        if conn.gateway_id is None and frame.headers.connection_id:
            conn.gateway_id = frame.headers.connection_id
            log.info("connection #%d is gateway connection %s", conn.number, conn.gateway_id)
        self._submit(frame, conn)
        return None

    def _replace(self, frame: Frame, old: Connection) -> Optional[Connection]:
        """Make-before-break: open the replacement first, then hand ``old`` to a retiring
        reader. None when ``old`` stays in use (already retiring, stopping, or no
        replacement could be opened: its close then takes the ordinary reconnect path)."""
        if old.retiring or old is not self.current or self.stopping.is_set():
            return None
        try:
            reason = str(frame.json().get("reason", "")) or "no reason given"
        except ProtocolError:
            reason = "no reason given"
        log.info(
            "gateway asked connection #%d to go (%s); opening its replacement", old.number, reason
        )
        try:
            new = self._open(planned=True)
        except DingSyncError as exc:
            log.warning("could not open a replacement (%s); staying on #%d", exc, old.number)
            return None
        old.retiring = True
        old.retire_at = self.clock() + self.config.disconnect_grace
        reader = threading.Thread(
            target=self._read,
            args=(old,),
            kwargs={"retiring": True},
            name=f"{self.threads}-reader-retiring",
            daemon=True,
        )
        try:
            reader.start()
        except RuntimeError as exc:
            log.error("cannot start a reader for retiring connection #%d: %s", old.number, exc)
            self.forget(old)  # unread pushes on it are delivered again
            return new
        with self._lock:
            self._retiring_readers = [t for t in self._retiring_readers if t.is_alive()]
            self._retiring_readers.append(reader)
        return new

    def _submit(self, frame: Frame, conn: Connection) -> None:
        if self.stopping.is_set():
            log.info("stopping: message %s left for DingTalk to deliver again", frame.message_id)
            return
        route = self.router.route_for(frame)
        if route is None:
            self.send_ack(conn, self.router.not_found(frame))
            return
        pool = self.pool
        if pool.full:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("all handler slots busy; the reader waits (backpressure)")
            conn.paused = True  # the silence that follows is ours, not the network's
        try:
            queued = pool.submit((frame, route, conn), give_up=self.stopping.is_set)
        finally:
            if conn.paused:
                conn.resume()
        if not queued:
            if not self.stopping.is_set():
                log.error("message %s not handled: no handler thread", frame.message_id)
            return  # not acked: DingTalk delivers it again
        if route.ack == AckPolicy.RECEIPT:
            self.send_ack(conn, route.receipt_ack(frame.message_id))

    def send_ack(self, conn: Connection, ack: Ack) -> None:
        """Queue ``ack`` on the connection its frame came from, else on the current one."""
        text = ack.to_wire()
        if conn.send(text):
            return
        current = self.current
        if current is not None and current is not conn and current.send(text):
            return
        self.counters.add("acks_lost")
        log.warning(
            "no open connection to ack message %s on; DingTalk may deliver it again",
            ack.message_id,
        )

    def join_retiring(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds each) for the retiring readers to finish."""
        with self._lock:
            readers = list(self._retiring_readers)
        for reader in readers:
            if reader is not threading.current_thread():
                reader.join(timeout)
