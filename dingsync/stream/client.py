"""StreamClient: receive DingTalk Stream Mode pushes on threads, without asyncio.

Four thread roles, each with one job (DESIGN §4):

- **reader** (``run_forever``'s caller, or ``dingsync-reader`` after ``start()``): opens each
  connection, a new ticket every time, and is the only thread that reads it. It answers
  SYSTEM frames at once and hands EVENT/CALLBACK frames to the handler pool, waiting while the
  pool is full (backpressure). It never runs a handler. After a SYSTEM ``disconnect`` it opens
  the replacement first, and a second reader (``dingsync-reader-retiring``) reads the old
  connection until the gateway closes it.
- **handler pool** (``dingsync-handler-N``, at most ``concurrency``): decode, dedupe, run the
  handler, queue the ack on the frame's connection. A job survives anything its handler
  raises, ``SystemExit`` included: the message is acked with an error code and its dedupe
  claim released, so a redelivery runs it again.
- **writer** (``dingsync-writer-N``, one per connection, see connection.py): writes the queued
  acks, a batch per system call, under a write deadline of ``dead_after``.
- **keepalive** (``dingsync-keepalive``, see liveness.py): pings quiet connections, aborts dead
  ones, closes a retiring one after ``disconnect_grace``, and ends a drain.

Stopping (``stop()``, ``with``, ``dingworker``'s SIGTERM, Ctrl-C in ``run_forever``): intake
ends at once. Frames that arrive afterwards are read but neither run nor acked, so DingTalk
delivers them again (to another replica, or to this app when it is back): an ack would claim
work that was never done. Running handlers finish and their acks are written while the
readers keep reading and the keepalive keeps pinging, until the pool is idle or the timeout
is up; then the connections close.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

import attrs

from ..config import Credentials, Endpoints, StreamConfig
from ..context import Context, WebhookPoster
from ..dedupe import NEW, PROCESSING, Claim, Deduper, DedupeStore, MemoryDedupeStore
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
from ..frames import Ack, Frame, FrameType, Topic
from ..routing import AckPolicy, Route, Router
from .connection import Connection
from .gateway import Connector, open_connection, origin_stamp
from .liveness import Keepalive, StreamStats, assess
from .workers import HandlerPool

if TYPE_CHECKING:
    import requests

    from ..api import ApiClient

__all__ = ["StreamClient", "StreamStats"]

log = logging.getLogger("dingsync.stream")

# Failures worth another connection attempt; anything else is a bug and propagates.
_RETRY_ON = (TransportError, GatewayOpenError, ConnectionClosed, AuthError)

_Job = Tuple[Frame, Route, Connection]


class StreamClient:
    """Receives pushes from the DingTalk Stream gateway and runs a Router's handlers.

    Args:
        credentials: the app's client id and secret.
        router: the handlers; its subscriptions are sent when each connection opens.
        endpoints: API base URLs (default: ``Endpoints.from_env()``).
        config: a :class:`~dingsync.StreamConfig`.
        dedupe: a :class:`~dingsync.DedupeStore` (default: in memory, ``config.dedupe_ttl``
            seconds, ``config.dedupe_max_entries`` messages); share a RedisDedupeStore
            between replicas.
        api: the ApiClient handed to handlers as ``ctx.api`` and used when a reply outlives
            its session webhook; by default one on the same credentials and endpoints.
        clock: monotonic clock (injectable for tests).
        sleep: replaces the backoff wait (injectable for tests; by default the wait ends early
            when stop() is called).
        connector: opens the websocket; ``websocket.create_connection`` by default.

    Example:
        >>> client = StreamClient(Credentials.from_env(), route)  # doctest: +SKIP
        >>> client.run_forever()  # blocks; or: with client: ...  # doctest: +SKIP
    """

    def __init__(
        self,
        credentials: Credentials,
        router: Router,
        *,
        endpoints: Optional[Endpoints] = None,
        config: Optional[StreamConfig] = None,
        dedupe: Optional[DedupeStore] = None,
        api: Optional[ApiClient] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Optional[Callable[[float], Any]] = None,
        connector: Optional[Connector] = None,
    ) -> None:
        self.credentials = credentials
        self.router = router
        self.endpoints = endpoints if endpoints is not None else Endpoints.from_env()
        self.config = config = config if config is not None else StreamConfig()
        self.dedupe: DedupeStore = (
            dedupe
            if dedupe is not None
            else MemoryDedupeStore(ttl=config.dedupe_ttl, max_entries=config.dedupe_max_entries)
        )
        self._deduper: Deduper[Tuple[Connection, str]] = Deduper(self.dedupe)
        self._owns_api = api is None
        self.api = api if api is not None else self._default_api()
        self._clock = clock
        self._sleep = sleep
        self._connector = connector
        self._lock = threading.Lock()
        self._counters: Dict[str, Any] = attrs.asdict(StreamStats())  # some are computed
        self._state = "new"
        self._thread: Optional[threading.Thread] = None
        self._reader_ident: Optional[int] = None
        self._connections: List[Connection] = []  # open: the current one and retiring ones
        self._current: Optional[Connection] = None
        self._retiring_readers: List[threading.Thread] = []
        self._numbers = itertools.count(1)
        self._healthy = False  # the current session delivered a frame
        self._ever_connected = False
        self._first_attempt = threading.Event()  # start() waits for it
        self._first_failure: Optional[BaseException] = None
        self._stopping = threading.Event()  # no more intake
        self._hard = False  # handlers not started yet are skipped; connections are cut
        self._deadline: Optional[float] = None  # of the drain, on self._clock
        self._drained = threading.Event()  # the keepalive ended the drain
        self._done = threading.Event()  # run_forever has returned
        self._pool = HandlerPool(
            self._job,
            size=config.concurrency,
            capacity=config.concurrency + config.max_pending,
            on_idle=self._on_idle,
        )
        self._keepalive = Keepalive(
            self._open_connections,
            interval=config.ping_interval,
            dead_after=config.dead_after,
            clock=clock,
            tick=self._drain_tick,
        )
        self._http: Optional[requests.Session] = None
        self._poster: Optional[WebhookPoster] = None
        self._origin: Optional[str] = None
        self.error: Optional[BaseException] = None
        self.last_error: Optional[BaseException] = None

    def _default_api(self) -> ApiClient:
        from ..api import ApiClient

        # No I/O here: the token is fetched the first time a handler uses ctx.api.
        return ApiClient(
            self.credentials,
            endpoints=self.endpoints,
            proxy=self.config.proxy,
            ca_bundle=self.config.ca_bundle,
        )

    def __repr__(self) -> str:
        return (
            f"StreamClient(client_id={self.credentials.client_id!r}, "
            f"state={self._state!r}, connected={self.connected!r})"
        )

    # -- lifecycle -----------------------------------------------------------------------
    def run_forever(self) -> None:
        """Receive until :meth:`stop` is called; reconnect on every fault.

        Ctrl-C (KeyboardInterrupt) drains like ``stop()``: running handlers finish and are
        acked within ``config.drain_timeout``; a second Ctrl-C stops at once. Then the
        KeyboardInterrupt is raised again, so the script ends as Ctrl-C ends scripts.

        Example:
            >>> StreamClient(creds, route).run_forever()  # doctest: +SKIP

        Raises:
            AuthError: DingTalk refused the credentials on the very first connection attempt.
            ReconnectGaveUp: the ReconnectPolicy's ``give_up_after``/``max_attempts`` ran out;
                ``__cause__`` is the last error.
            StreamError: the client was already started.
        """
        with self._lock:
            if self._state != "new":
                raise StreamError("a StreamClient runs once; create a new one to run again")
            self._state = "running"
            self._reader_ident = threading.get_ident()
        interrupted = False
        try:
            self._begin()
            while True:
                try:
                    self._receive()
                    break
                except KeyboardInterrupt:
                    if interrupted:
                        log.warning("interrupted again: stopping now")
                    else:
                        log.warning("interrupted: draining (interrupt again to stop at once)")
                    self._request_stop(self.config.drain_timeout, drain=not interrupted)
                    interrupted = True
        finally:
            self._shutdown()
        if interrupted:
            raise KeyboardInterrupt

    def start(self) -> StreamClient:
        """Run :meth:`run_forever` on a background thread (``dingsync-reader``); returns self
        once the first connection attempt has ended. A later fatal error (ReconnectGaveUp)
        ends the thread and is kept in ``error``.

        Example:
            >>> client = StreamClient(creds, route).start()  # doctest: +SKIP
            >>> client.stop(timeout=30)  # doctest: +SKIP

        Raises:
            AuthError: DingTalk refused the credentials on the first attempt.
        """
        with self._lock:
            if self._state != "new" or self._thread is not None:
                raise StreamError("a StreamClient runs once; create a new one to run again")
            self._thread = threading.Thread(
                target=self._run_in_background, name="dingsync-reader", daemon=True
            )
        self._thread.start()
        self._first_attempt.wait()
        if self._first_failure is not None:
            self._thread.join()
            raise self._first_failure
        return self

    def _run_in_background(self) -> None:
        try:
            self.run_forever()
        except BaseException as exc:
            self.error = exc
            log.error("stream client stopped: %s: %s", type(exc).__name__, exc)

    def stop(self, timeout: float = 30.0, *, drain: bool = True) -> None:
        """Stop receiving; with ``drain`` let running and queued handlers finish and send their
        acks (within ``timeout``), then close the connection. Returns within ``timeout``.
        Idempotent; a later call with ``drain=False`` turns a draining stop into a hard one.

        Example:
            >>> client.stop(timeout=30)  # doctest: +SKIP
        """
        with self._lock:
            if self._state == "new" and self._thread is None:
                self._state = "stopped"
                self._done.set()
                return
        self._request_stop(timeout, drain=drain)
        if (
            threading.get_ident() == self._reader_ident
            or threading.current_thread().name.startswith("dingsync-")
        ):
            return  # a thread of this client cannot wait for the client to finish
        if not self._done.wait(timeout):
            log.warning("stop(): the client did not finish within %gs", timeout)

    def _request_stop(self, timeout: float, *, drain: bool) -> None:
        # Leave a little of the timeout for closing the connections and joining threads.
        deadline = self._clock() + max(0.0, timeout - min(0.5, timeout / 10))
        with self._lock:
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
            if not drain:
                self._hard = True
            first = not self._stopping.is_set()
            self._stopping.set()
        if first:
            log.info("stopping: no new frames; %s", "draining handlers" if drain else "hard stop")
        self._pool.wake()  # a reader waiting for room gives the frame up: it is redelivered
        self._keepalive.wake()

    def __enter__(self) -> StreamClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(timeout=self.config.drain_timeout)

    # -- observability -------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether a gateway connection is open right now.

        Example:
            >>> client.connected  # doctest: +SKIP
            True
        """
        conn = self._current
        return conn is not None and not conn.closed

    @property
    def stats(self) -> StreamStats:
        """A frozen snapshot of the counters (see :class:`StreamStats`).

        Example:
            >>> client.stats.in_flight  # doctest: +SKIP
            0
        """
        with self._lock:
            counters = dict(self._counters)
            conn = self._current
        counters["in_flight"] = self._pool.in_flight
        if conn is not None and conn.last_alive is not None:
            counters["last_alive_at"] = max(counters["last_alive_at"] or 0.0, conn.last_alive)
        counters["connected"] = conn is not None and not conn.closed
        return StreamStats(**counters)

    def health(self) -> Tuple[bool, Dict[str, Any]]:
        """``(healthy, details)``: healthy means connected, with a frame or pong seen within
        ``dead_after`` seconds. ``details`` holds the stats plus ``seconds_since_alive``,
        ``state`` and ``last_error``.

        Example:
            >>> ok, details = client.health()  # doctest: +SKIP
        """
        return assess(
            self.stats,
            now=self._clock(),
            dead_after=self.config.dead_after,
            state=self._state,
            last_error=self.last_error,
        )

    def _count(self, counter: str, delta: int = 1) -> None:
        with self._lock:
            self._counters[counter] += delta

    def _count_acks(self, written: int, lost: int) -> None:
        with self._lock:
            self._counters["acks_sent"] += written
            self._counters["acks_lost"] += lost

    # -- the reader ----------------------------------------------------------------------
    def _begin(self) -> None:
        import requests

        self._http = http = requests.Session()
        # Every handler thread may reply at once: one pooled connection each, none discarded.
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=self.config.concurrency)
        http.mount("https://", adapter)
        http.mount("http://", adapter)
        proxy = self.config.proxy
        self._poster = WebhookPoster(
            http,
            timeout=self.config.open_timeout,
            verify=self.config.ca_bundle or True,
            proxies={"http": proxy, "https": proxy} if proxy else None,
        )
        self._keepalive.start()
        subs = self.router.subscriptions()
        if not subs:
            log.warning("the router has no handlers: DingTalk will push nothing but SYSTEM frames")
        log.info(
            "starting for client id %s: %s; each push goes to ONE of the app's open connections",
            self.credentials.client_id,
            ", ".join(f"{s['type']} {s['topic']}" for s in subs) or "no subscriptions",
        )

    def _receive(self) -> None:
        """Connect and read, reconnecting, until stopped; then read through the drain."""
        import tenacity

        while not self._stopping.is_set():
            retrying = self.config.reconnect.retrying(
                self._stopping,
                sleep=self._sleep,
                clock=self._clock,
                retry_on=_RETRY_ON,
                auth_errors=(AuthError,),
                fatal=self._fatal,
                before_sleep=self._announce_retry,
            )
            try:
                for attempt in retrying:
                    with attempt:
                        self._session()
            except AuthError:
                if self._first_failure is None:
                    raise
                raise self._first_failure from None
            except tenacity.RetryError as exc:
                if self._stopping.is_set():
                    break
                attempts = exc.last_attempt.attempt_number
                cause = exc.last_attempt.exception()
                log.error("giving up after %d failed connection attempts: %s", attempts, cause)
                raise ReconnectGaveUp(
                    f"gave up after {attempts} failed connection attempts; last error: {cause}",
                    attempts=attempts,
                ) from cause
        conn = self._current
        if conn is not None:  # interrupted while reading it: it stays open for the drain
            self._read(conn)

    def _fatal(self, error: BaseException) -> bool:
        # Credentials refused before any connection ever opened: a typo, not an outage, and
        # the user of a plain script must hear it (nothing is logged without logging set up).
        if isinstance(error, AuthError) and not self._ever_connected:
            self._first_failure = AuthError(
                f"{error}; if the app has an IP allow-list (IP 白名单), this machine's public "
                "address must be on it",
                status=error.status,
                code=error.code,
                request_id=error.request_id,
            )
            return True
        return False

    def _announce_retry(self, error: BaseException, failures: int, wait: float) -> None:
        self.last_error = error
        self._first_attempt.set()
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
        if self._stopping.is_set():
            return
        self._healthy = False
        conn = self._open(planned=False)
        try:
            self._read(conn)
        except (TransportError, StreamError) as exc:
            # Healthy: it delivered frames, or lived long enough to have been dead-checked.
            lived = self._clock() - conn.opened_at >= self.config.dead_after
            if not (self._healthy or lived):
                raise
            self.last_error = exc
            log.warning("%s; reconnecting", exc)

    def _open(self, *, planned: bool) -> Connection:
        if self._origin is None:
            self._origin = origin_stamp(self.endpoints.api)
        try:
            conn = open_connection(
                self._http,
                credentials=self.credentials,
                endpoints=self.endpoints,
                subscriptions=self.router.subscriptions(),
                config=self.config,
                number=next(self._numbers),
                origin=self._origin,
                connector=self._connector,
                clock=self._clock,
                on_acks=self._count_acks,
            )
        except BaseException as exc:
            if not self._ever_connected and self._fatal(exc):
                self._first_attempt.set()
            raise
        with self._lock:
            if self._counters["connections_opened"] and not planned:
                self._counters["reconnects"] += 1
            self._counters["connections_opened"] += 1
            self._connections.append(conn)
            self._current = conn
        self._ever_connected = True
        self._first_attempt.set()
        self.last_error = None
        return conn

    def _open_connections(self) -> List[Connection]:
        with self._lock:
            return list(self._connections)

    def _read(self, conn: Connection) -> None:
        """Read ``conn`` (and its replacements) until it closes: returns when stopping,
        raises ConnectionClosed otherwise (or whatever else went wrong)."""
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
            self._forget(conn)
            if isinstance(exc, ConnectionClosed) and self._stopping.is_set():
                return
            if not isinstance(exc, DingSyncError):
                log.exception("unexpected error in the reader; reconnecting")
                raise TransportError(f"unexpected reader error: {type(exc).__name__}") from exc
            raise

    def _forget(self, conn: Connection) -> None:
        """The reader is done with ``conn``: it leaves the client's books and is freed."""
        with self._lock:
            if conn.last_alive is not None:
                self._counters["last_alive_at"] = conn.last_alive
            if conn in self._connections:
                self._connections.remove(conn)
            if self._current is conn:
                self._current = None
        conn.finish()

    def _handle_raw(self, raw: bytes, conn: Connection) -> Optional[Connection]:
        """Handle one frame read from ``conn``; returns the replacement after a disconnect."""
        with self._lock:
            self._counters["frames_received"] += 1
            self._counters["last_frame_at"] = conn.last_alive
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
                self._send_ack(conn, Ack.error(mid, 400, f"malformed frame: {exc.field}", {}))
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
                self._send_ack(conn, Ack.ok(frame.message_id, frame.data))
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
        if old.retiring or old is not self._current or self._stopping.is_set():
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
        old.retire_at = self._clock() + self.config.disconnect_grace
        reader = threading.Thread(
            target=self._read_retiring, args=(old,), name="dingsync-reader-retiring", daemon=True
        )
        try:
            reader.start()
        except RuntimeError as exc:
            log.error("cannot start a reader for retiring connection #%d: %s", old.number, exc)
            self._forget(old)  # unread pushes on it are delivered again
            return new
        with self._lock:
            self._retiring_readers = [t for t in self._retiring_readers if t.is_alive()]
            self._retiring_readers.append(reader)
        return new

    def _read_retiring(self, conn: Connection) -> None:
        try:
            while True:
                raw = conn.recv()
                if raw is not None:
                    self._handle_raw(raw, conn)
        except ConnectionClosed as exc:
            log.info("retired connection #%d is gone: %s", conn.number, exc)
        except Exception:
            log.exception("reader of retired connection #%d failed", conn.number)
        finally:
            self._forget(conn)

    def _submit(self, frame: Frame, conn: Connection) -> None:
        if self._stopping.is_set():
            log.info("stopping: message %s left for DingTalk to deliver again", frame.message_id)
            return
        route = self.router.route_for(frame)
        if route is None:
            self._send_ack(conn, self.router.not_found(frame))
            return
        pool = self._pool
        if pool.full:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("all handler slots busy; the reader waits (backpressure)")
            conn.paused = True  # the silence that follows is ours, not the network's
        try:
            queued = pool.submit((frame, route, conn), give_up=self._stopping.is_set)
        finally:
            if conn.paused:
                conn.resume()
        if not queued:
            if not self._stopping.is_set():
                log.error("message %s not handled: no handler thread", frame.message_id)
            return  # not acked: DingTalk delivers it again
        if route.ack == AckPolicy.RECEIPT:
            self._send_ack(conn, route.receipt_ack(frame.message_id))

    # -- the handler threads -------------------------------------------------------------
    def _job(self, job: _Job) -> None:
        frame, route, conn = job
        if self._hard:
            return  # not run, not acked: DingTalk delivers it again
        try:
            self._process(frame, route, conn)
        except Exception:  # a bug here must cost one message, never a handler thread
            log.exception("internal error while handling message %s", frame.message_id)

    def _process(self, frame: Frame, route: Route, conn: Connection) -> None:
        receipt = route.ack == AckPolicy.RECEIPT
        try:
            payload = route.decode(frame)
        except ProtocolError as exc:
            if not receipt:
                self._send_ack(conn, self.router.malformed(frame, exc))
            return
        key = f"{self.credentials.client_id}:{route.dedupe_key(frame, payload)}"
        claim = self._deduper.claim(key, (conn, frame.message_id))
        if claim is None:  # running on another thread: acked when that run finishes
            self._count("redeliveries_skipped")
            return
        if claim.state != NEW:
            self._answer_duplicate(frame, route, conn, key, claim)
            return
        if receipt:  # redeliveries during the handler get the receipt ack too
            self._deduper.remember(key, route.receipt_ack(frame.message_id))
        ack = self._run_handler(frame, route, payload, redelivered=claim.attempt > 1)
        if not receipt:
            # Stored before it is sent: a duplicate arriving right after the ack finds it.
            self._deduper.remember(key, ack)
            self._send_ack(conn, ack)
        self._ack_waiters(key, None if receipt else ack)

    def _run_handler(self, frame: Frame, route: Route, payload: Any, *, redelivered: bool) -> Ack:
        try:
            ctx = Context(
                frame=frame,
                message=payload,
                api=self.api,
                redelivered=redelivered,
                post=self._poster,
            )
            ack = self.router.invoke(route, payload, ctx)
        except BaseException as exc:  # KeyboardInterrupt raised by a handler: still one message
            log.error(
                "handler %s raised %s on message %s",
                route.name,
                type(exc).__name__,
                frame.message_id,
            )
            ack = route.error_ack(frame.message_id, exc)
        if ack.code >= 500:
            self._count("handler_errors")
        return ack

    def _answer_duplicate(
        self, frame: Frame, route: Route, conn: Connection, key: str, claim: Claim
    ) -> None:
        self._count("redeliveries_skipped")
        if claim.state == PROCESSING:
            # Another replica runs it: its ack answers the gateway, or the next redelivery
            # finds the cached ack.
            log.info("message %s is being handled elsewhere; not run again", frame.message_id)
            self._ack_waiters(key, None)
            return
        ack = claim.ack or route.receipt_ack(frame.message_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("message %s was handled already; replaying its ack", frame.message_id)
        if route.ack == AckPolicy.RECEIPT:  # the reader acked it on receipt already
            self._ack_waiters(key, None)
            return
        self._send_ack(conn, attrs.evolve(ack, message_id=frame.message_id))
        self._ack_waiters(key, ack)

    def _ack_waiters(self, key: str, ack: Optional[Ack]) -> None:
        for conn, message_id in self._deduper.finish(key):
            if ack is not None:
                self._send_ack(conn, attrs.evolve(ack, message_id=message_id))

    def _send_ack(self, conn: Connection, ack: Ack) -> None:
        """Queue ``ack`` on the connection its frame came from, else on the current one."""
        text = ack.to_wire()
        if conn.send(text):
            return
        current = self._current
        if current is not None and current is not conn and current.send(text):
            return
        self._count("acks_lost")
        log.warning(
            "no open connection to ack message %s on; DingTalk may deliver it again",
            ack.message_id,
        )

    # -- stopping ------------------------------------------------------------------------
    def _on_idle(self) -> None:
        if self._stopping.is_set():
            self._keepalive.wake()

    def _drain_tick(self, now: float) -> Optional[float]:
        """On the keepalive: end the drain once no handler runs or time is up; else return
        the deadline, when to look again."""
        if not self._stopping.is_set() or self._drained.is_set():
            return None
        deadline = self._deadline if self._deadline is not None else now
        in_flight = self._pool.in_flight
        if in_flight and not self._hard and now < deadline:
            return deadline
        if in_flight and not self._hard:
            log.warning(
                "%d handler(s) still running at the end of the drain; their acks will not be "
                "sent, so DingTalk may deliver those messages again",
                in_flight,
            )
            self._hard = True  # queued frames are skipped: DingTalk redelivers them
        for conn in self._open_connections():
            if self._hard:
                conn.abort("stopped")
            else:
                conn.close("stopped")
        self._drained.set()
        return None

    def _shutdown(self) -> None:
        try:
            self._request_stop(self.config.drain_timeout, drain=True)
            # The readers are done; a drain without a connection still lets handlers finish.
            if self._keepalive.running:
                self._drained.wait(self.config.drain_timeout + 1.0)
            self._pool.close()
            self._keepalive.stop()
            for conn in self._open_connections():
                self._forget(conn)
            with self._lock:
                readers = list(self._retiring_readers)
            for reader in readers:
                if reader is not threading.current_thread():
                    reader.join(1.0)
            if self._http is not None:
                self._http.close()
            if self._owns_api and self.api is not None:
                self.api.close()
        finally:
            with self._lock:
                self._state = "stopped"
            self._first_attempt.set()
            self._done.set()
            log.info("stopped")


def message_id_of(raw: Union[bytes, str]) -> Optional[str]:
    """The messageId of a frame that failed to decode, if one can be found (to answer 400).

    Example:
        >>> message_id_of(b'{"headers": {"messageId": "m1", "topic": 5}}')
        'm1'
    """
    try:
        # Strict UTF-8, as Frame.from_wire: json.loads(bytes) would let invalid bytes through
        # as lone surrogates, which no ack can carry.
        text = bytes(raw).decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        headers = json.loads(text).get("headers")
        mid = headers.get("messageId") if isinstance(headers, dict) else None
    except (ValueError, AttributeError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return mid if isinstance(mid, str) and mid else None
