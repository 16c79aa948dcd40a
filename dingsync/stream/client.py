"""StreamClient: receive DingTalk Stream Mode pushes on threads, without asyncio.

Threads (DESIGN §4):

- the reader (``run_forever``'s caller, or ``dingsync-reader`` after ``start()``) opens a
  ticket and a websocket, reads frames, answers SYSTEM ping inline and hands every other frame
  to the handler pool;
- the reader also runs handlers itself while no handler thread is busy (with concurrency > 1),
  so a burst of quick messages costs no thread hand-off per frame; when such a handler blocks,
  ``dingsync-standby`` reads (and if need be reconnects) in its place (``standby.py``). The
  reader waits for the stand-in to stop before it reads again, so one thread at a time reads
  and connects, and reconnects never race;
- ``dingsync-handler-N`` (a :class:`~dingsync.stream.workers.HandlerPool` of ``concurrency``
  threads, one fewer when the reader runs handlers too) run handlers and send acks; at most
  ``concurrency + max_pending`` frames are queued or running, beyond that the reader waits
  (backpressure). ``dingsync-handler-monitor`` starts threads beyond the first two when the
  running handlers block;
- ``dingsync-keepalive`` pings and runs the watchdog;
- ``dingsync-reader-retiring`` drains a connection after SYSTEM disconnect, while the reader
  already reads its replacement.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import attrs

from ..config import Credentials, Endpoints, StreamConfig
from ..context import Context, WebhookPoster
from ..errors import (
    AuthError,
    ConnectionClosed,
    GatewayOpenError,
    ProtocolError,
    ReconnectGaveUp,
    StreamError,
    TransportError,
)
from ..frames import Ack, Frame, FrameType, Topic
from ..routing import AckPolicy, Route, Router
from .connection import Connection, Connector, message_id_of, open_connection, origin_stamp
from .dedupe import NEW, PROCESSING, Claim, Deduper, DedupeStore, MemoryDedupeStore
from .liveness import Keepalive, RetiringReader, StreamStats, assess, is_dead, make_before_break
from .standby import Rescue, Standby
from .workers import HandlerPool

if TYPE_CHECKING:
    import requests

    from ..api import ApiClient

__all__ = ["StreamClient", "StreamStats"]

log = logging.getLogger("dingsync.stream")

# Failures worth another connection attempt; anything else is a bug and propagates.
_RETRY_ON = (TransportError, GatewayOpenError, ConnectionClosed, AuthError)


class StreamClient:
    """Receives pushes from the DingTalk Stream gateway and runs a Router's handlers.

    Args:
        credentials: the app's client id and secret.
        router: the handlers; its subscriptions are sent when each connection opens.
        endpoints: API base URLs (default: ``Endpoints.from_env()``).
        config: a :class:`~dingsync.StreamConfig`.
        dedupe: a :class:`~dingsync.stream.dedupe.DedupeStore` (default: in memory, kept
            ``config.dedupe_ttl`` seconds); share a RedisDedupeStore between replicas.
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
        self.config = config if config is not None else StreamConfig()
        self.dedupe: DedupeStore = (
            dedupe if dedupe is not None else MemoryDedupeStore(ttl=self.config.dedupe_ttl)
        )
        self._deduper: Deduper[Tuple[Connection, str]] = Deduper(self.dedupe)
        self._owns_api = api is None
        self.api = api if api is not None else self._default_api()
        self._clock = clock
        self._sleep = sleep
        self._connector = connector
        self._lock = threading.Lock()
        self._counters: Dict[str, Any] = attrs.asdict(StreamStats())  # connected is computed
        self._stopping = threading.Event()  # no more intake
        self._done = threading.Event()  # run_forever has returned
        self._hard = False
        self._drain_deadline: Optional[float] = None
        self._state = "new"
        self._reader_ident: Optional[int] = None
        self._thread: Optional[threading.Thread] = None
        self._current: Optional[Connection] = None
        self._retiring: List[RetiringReader] = []
        self._numbers = itertools.count(1)
        self._healthy_session = False
        # With concurrency > 1 the reader runs a handler itself while no handler thread is
        # busy (a burst then costs no thread hand-off per frame; see standby.py), so the pool
        # keeps one thread fewer: never more than `concurrency` handlers run at once. With
        # concurrency 1 every handler runs on the one handler thread, in order.
        self._inline_allowed = self.config.concurrency > 1
        self._pool = HandlerPool(
            self._work,
            threads=self.config.concurrency - self._inline_allowed,
            capacity=self.config.concurrency + self.config.max_pending - self._inline_allowed,
        )
        self._standby = Standby(self._read_for_reader)
        self._inline = False  # the reader is running a handler itself
        self._keepalive: Optional[Keepalive] = None
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

        Example:
            >>> StreamClient(creds, route).run_forever()  # doctest: +SKIP

        Raises:
            ReconnectGaveUp: the ReconnectPolicy's ``give_up_after``/``max_attempts`` ran out;
                ``__cause__`` is the last error (an AuthError for bad credentials).
            StreamError: the client was already started.
        """
        with self._lock:
            if self._state != "new":
                raise StreamError("a StreamClient runs once; create a new one to run again")
            self._state = "running"
            self._reader_ident = threading.get_ident()
        try:
            self._begin()
            self._reconnect_loop()
        finally:
            self._shutdown()

    def start(self) -> StreamClient:
        """Run :meth:`run_forever` on a background thread (``dingsync-reader``); returns self.

        A fatal error (ReconnectGaveUp) ends the thread and is kept in ``error``.

        Example:
            >>> client = StreamClient(creds, route).start()  # doctest: +SKIP
            >>> client.stop(timeout=30)  # doctest: +SKIP
        """
        with self._lock:
            if self._state != "new" or self._thread is not None:
                raise StreamError("a StreamClient runs once; create a new one to run again")
            self._thread = threading.Thread(
                target=self._run_in_background, name="dingsync-reader", daemon=True
            )
        self._thread.start()
        return self

    def _run_in_background(self) -> None:
        try:
            self.run_forever()
        except BaseException as exc:
            self.error = exc
            log.error("stream client stopped: %s: %s", type(exc).__name__, exc)

    def stop(self, timeout: float = 30.0, *, drain: bool = True) -> None:
        """Stop receiving; with ``drain`` let running and queued handlers finish and send their
        acks (within ``timeout``), then close the connection. Idempotent; a later call with
        ``drain=False`` turns a draining stop into a hard one.

        Example:
            >>> client.stop(timeout=30)  # doctest: +SKIP
        """
        with self._lock:
            if self._state == "new" and self._thread is None:
                self._state = "stopped"
                self._done.set()
                return
            deadline = self._clock() + max(0.0, timeout - min(1.0, timeout / 10))
            if self._drain_deadline is None or deadline < self._drain_deadline:
                self._drain_deadline = deadline
            if not drain:
                self._hard = True
        self._pool.wake()
        if not self._stopping.is_set():
            log.info("stopping: no new frames; %s", "draining handlers" if drain else "hard stop")
        self._stopping.set()
        me = threading.get_ident()
        if me == self._reader_ident or threading.current_thread().name.startswith(
            "dingsync-handler"
        ):
            return  # the reader (or a handler) cannot wait for itself to finish
        if self._hard and self._inline:
            self._abort_under_handler("hard stop")
            return
        if not self._done.wait(timeout):
            log.warning("stop(): the client did not finish within %gs", timeout)
            if self._inline:
                self._abort_under_handler(f"stop() timed out after {timeout:g}s")

    def _abort_under_handler(self, reason: str) -> None:
        # The reader is inside a handler and cannot be waited for, and nothing reads the
        # connection while stopping. Cut it, so DingTalk sends new pushes to other
        # connections and delivers the unacked ones again; the reader finishes stopping when
        # that handler returns.
        conn = self._current
        if conn is not None:
            conn.abort(reason)

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
        counters["in_flight"] = self._pool.in_flight + self._inline
        if conn is not None and conn.last_alive is not None:
            earlier = counters["last_alive_at"]
            counters["last_alive_at"] = max(earlier or 0.0, conn.last_alive)
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

    # -- the reader ----------------------------------------------------------------------
    def _begin(self) -> None:
        import requests

        self._http = requests.Session()
        proxies = (
            {"http": self.config.proxy, "https": self.config.proxy} if self.config.proxy else None
        )
        self._poster = WebhookPoster(
            self._http,
            timeout=self.config.open_timeout,
            verify=self.config.ca_bundle or True,
            proxies=proxies,
        )
        self._keepalive = Keepalive(
            lambda: self._current,
            interval=self.config.ping_interval,
            dead_after=self.config.dead_after,
            clock=self._clock,
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

    def _reconnect_loop(self) -> None:
        import tenacity

        while not self._stopping.is_set():
            retrying = self.config.reconnect.retrying(
                self._stopping,
                sleep=self._sleep,
                clock=self._clock,
                retry_on=_RETRY_ON,
                auth_errors=(AuthError,),
                before_sleep=self._announce_retry,
            )
            try:
                for attempt in retrying:
                    with attempt:
                        self._session()
            except tenacity.RetryError as exc:
                if self._stopping.is_set():
                    return
                attempts = exc.last_attempt.attempt_number
                cause = exc.last_attempt.exception()
                log.error("giving up after %d failed connection attempts: %s", attempts, cause)
                raise ReconnectGaveUp(
                    f"gave up after {attempts} failed connection attempts; last error: {cause}",
                    attempts=attempts,
                ) from cause

    def _announce_retry(self, error: BaseException, failures: int, wait: float) -> None:
        self.last_error = error
        if isinstance(error, AuthError):
            log.error("%s; next attempt in %.0fs", error, wait)
        else:
            log.warning(
                "connection attempt %d failed (%s); retrying in %.1fs", failures, error, wait
            )

    def _session(self) -> None:
        """One connection (or a chain of make-before-break replacements) until it ends.

        Returns normally when stopping or after a healthy session ended (the backoff restarts
        from zero); raises when the connection could not be opened or died without ever
        delivering a frame.
        """
        if self._stopping.is_set():
            return
        self._healthy_session = False
        conn = self._open(planned=False)
        try:
            self._serve(conn)
        except (TransportError, StreamError) as exc:
            # Healthy: it delivered frames, or lived long enough to have been dead-checked.
            lived = self._clock() - conn.opened_at >= self.config.dead_after
            if not (self._healthy_session or lived):
                raise
            self.last_error = exc
            log.warning("%s; reconnecting", exc)
        except Exception as exc:  # a bug here must not end the receiving, only this connection
            log.exception("unexpected error in the reader; reconnecting")
            raise TransportError(f"unexpected reader error: {type(exc).__name__}") from exc
        finally:
            current = self._current
            if current is not None and not self._stopping.is_set():
                self._drop_current(current)

    def _drop_current(self, conn: Connection) -> None:
        with self._lock:
            if conn.last_alive is not None:
                self._counters["last_alive_at"] = conn.last_alive
            if self._current is conn:
                self._current = None
        conn.close()

    def _open(self, *, planned: bool) -> Connection:
        if self._origin is None:
            self._origin = origin_stamp(self.endpoints.api)
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
        )
        conn.on_acks_lost = self._acks_lost
        with self._lock:
            if self._counters["connections_opened"] and not planned:
                self._counters["reconnects"] += 1
            self._counters["connections_opened"] += 1
            self._current = conn
        self.last_error = None
        return conn

    def _serve(self, conn: Connection) -> None:
        dead_after = self.config.dead_after
        stopping = self._stopping.is_set
        handle = self._handle_raw
        while not stopping():
            raw = conn.recv()
            if raw is None:
                # Only silence can make it dead: a frame just proved it alive.
                if is_dead(conn, self._clock(), dead_after):
                    conn.abort(f"no frame or pong for more than {dead_after}s")
                    raise ConnectionClosed(
                        f"connection #{conn.number} showed no sign of life for {dead_after}s"
                    )
                continue
            self._healthy_session = True
            replacement = handle(raw, conn)
            if replacement is not None:
                conn = replacement

    def _handle_raw(self, raw: bytes, conn: Connection) -> Optional[Connection]:
        """Handle one frame read from ``conn``; returns the replacement after a disconnect."""
        now = conn.last_alive  # set by the recv() that returned this frame
        if now is None:
            now = self._clock()
        counters = self._counters
        with self._lock:
            counters["frames_received"] += 1
            counters["last_frame_at"] = now
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
            return self._system(frame, conn)
        if conn.gateway_id is None and frame.headers.connection_id:
            conn.gateway_id = frame.headers.connection_id
            log.info("connection #%d is gateway connection %s", conn.number, conn.gateway_id)
        return self._submit(frame, conn)

    def _system(self, frame: Frame, conn: Connection) -> Optional[Connection]:
        if frame.topic == Topic.PING:
            try:
                conn.send(Ack.ok(frame.message_id, frame.data).to_wire())
            except ConnectionClosed as exc:
                log.info("could not answer a ping: %s", exc)
            return None
        if frame.topic == Topic.DISCONNECT:
            return self._replace(frame, conn)
        log.debug("ignored SYSTEM topic %s", frame.topic)
        return None

    def _replace(self, frame: Frame, old: Connection) -> Optional[Connection]:
        if old.retiring or old is not self._current:
            return None  # already being replaced
        replaced = make_before_break(
            old,
            frame,
            open_new=lambda: self._open(planned=True),
            on_frame=self._handle_raw,
            grace=self.config.disconnect_grace,
            stopping=self._stopping,
            clock=self._clock,
        )
        if replaced is None:
            return None
        new, reader = replaced
        with self._lock:
            self._retiring = [r for r in self._retiring if r.is_alive()] + [reader]
        return new

    # -- handing frames to the pool ------------------------------------------------------
    def _submit(self, frame: Frame, conn: Connection) -> Optional[Connection]:
        """Run the frame's handler: on the reader itself while no handler thread is busy (the
        reader only: never a retiring reader or the stand-in), else on the handler threads.
        Returns the connection to read next when the stand-in met a SYSTEM disconnect."""
        route = self.router.route_for(frame)
        if route is None:
            self._send_ack(conn, self.router.not_found(frame))
            return None
        if route.ack == AckPolicy.RECEIPT:
            self._send_ack(conn, route.receipt_ack(frame.message_id))
        job = (frame, route, conn)
        pool = self._pool
        if (
            self._inline_allowed
            and not pool.in_flight
            and threading.get_ident() == self._reader_ident
            and not self._stopping.is_set()
        ):
            return self._run_inline(job, conn)
        if not pool.put_nowait(job) and not pool.closed:
            self._wait_for_room(job, conn)
        return None

    def _run_inline(
        self, job: Tuple[Frame, Route, Connection], conn: Connection
    ) -> Optional[Connection]:
        standby = self._standby
        self._inline = True
        standby.begin(conn)
        try:
            self._work(job)
        finally:
            self._inline = False
            rescue = standby.end()
        if rescue is None:
            return None
        if rescue.error is not None:
            raise rescue.error  # as if the reader's own read had failed
        return rescue.replacement

    def _read_for_reader(self, conn: Connection, still_blocked: Callable[[], bool]) -> Rescue:
        """On the stand-in, while a handler run by the reader blocks: read ``conn`` in its
        place, handing every frame to the handler threads."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("a handler blocks the reader; reading connection #%d meanwhile", conn.number)
        rescue = Rescue()
        stopping = self._stopping.is_set
        while still_blocked() and not stopping():
            try:
                raw = conn.recv()
            except ConnectionClosed as exc:
                # The reader may stay in that handler for long: receiving must not wait for
                # it, so the stand-in connects again in its place.
                replacement = self._reconnect_for_reader(conn, exc, still_blocked)
                if replacement is None:
                    rescue.error = exc  # the reader reconnects, as after its own failed read
                    break
                conn = rescue.replacement = replacement
                continue
            if raw is None:
                continue
            replacement = self._handle_raw(raw, conn)
            if replacement is not None:
                # A retiring reader drains the old one; the stand-in reads the replacement
                # until the handler returns, then the reader takes it over.
                conn = rescue.replacement = replacement
        return rescue

    def _reconnect_for_reader(
        self, dead: Connection, error: BaseException, still_blocked: Callable[[], bool]
    ) -> Optional[Connection]:
        """Open a new connection while the reader is held in a handler, with the reconnect
        policy's waits; None once the handler returns (the reader takes over) or on stop."""
        log.warning("%s; reconnecting while a handler holds the reader", error)
        self._drop_current(dead)
        policy = self.config.reconnect
        failures = 0
        while still_blocked() and not self._stopping.is_set():
            try:
                return self._open(planned=False)
            except _RETRY_ON as exc:
                failures += 1
                wait = policy.delay(failures, auth=isinstance(exc, AuthError))
                self._announce_retry(exc, failures, wait)
                deadline = time.monotonic() + wait
                # In slices: the reader waits for this thread once its handler returns.
                while still_blocked() and not self._stopping.wait(
                    min(0.1, deadline - time.monotonic())
                ):
                    if time.monotonic() >= deadline:
                        break
        return None

    def _wait_for_room(self, job: Tuple[Frame, Route, Connection], conn: Connection) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("all handler slots busy; the reader waits (backpressure)")
        conn.paused = True  # the silence that follows is ours, not the network's
        conn.flush_held()  # the reader's held acks must not wait for a free handler thread
        try:
            # A hard stop while waiting (or a closed pool): no ack, DingTalk redelivers.
            while not self._pool.put(job, self.config.recv_timeout):
                if self._hard or self._pool.closed:
                    return
        finally:
            conn.resume()

    def _work(self, job: Tuple[Frame, Route, Connection]) -> None:
        frame, route, conn = job
        try:
            if not self._hard:
                self._process(frame, route, conn)
        except Exception:  # a bug here must cost one message, never a handler thread
            log.exception("internal error while handling message %s", frame.message_id)

    def _process(self, frame: Frame, route: Route, conn: Connection) -> None:
        receipt = route.ack == AckPolicy.RECEIPT
        try:
            payload = route.decode(frame)
        except ProtocolError as exc:
            ack = self.router.malformed(frame, exc)
            if not receipt:
                self._send_ack(conn, ack)
            return
        key = f"{self.credentials.client_id}:{route.dedupe_key(frame, payload)}"
        claim = self._deduper.claim(key, (conn, frame.message_id))
        if claim is None:  # running on another thread: acked when that run finishes
            self._count("redeliveries_skipped")
            return
        if claim.state != NEW:
            self._answer_duplicate(frame, route, conn, key, claim)
            return
        ctx = Context(
            frame=frame,
            message=payload,
            api=self.api,
            redelivered=claim.attempt > 1,
            post=self._poster,
        )
        if receipt:
            ack = route.receipt_ack(frame.message_id)
            self._deduper.remember(key, ack)  # redeliveries during the handler get it too
            if self.router.invoke(route, payload, ctx).code >= 500:
                self._count("handler_errors")
        else:
            ack = self.router.invoke(route, payload, ctx)
            if ack.code >= 500:
                self._count("handler_errors")
            # Stored before it is sent: a duplicate arriving right after the ack finds it.
            self._deduper.remember(key, ack)
            self._send_ack(conn, ack)
        self._ack_waiters(key, None if receipt else ack)

    def _count(self, counter: str, delta: int = 1) -> None:
        with self._lock:
            self._counters[counter] += delta

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
        """Ack on the connection the frame came from, else on the current one.

        Acks from several handler threads are coalesced into one write (see
        :meth:`Connection.send_coalesced`). An ack counts as sent once it is written or handed
        to the thread that is writing; when that thread's write fails, the acks it held go to
        the current connection, and those that cannot be sent anywhere are counted back out.
        """
        text = ack.to_wire()
        current = self._current
        if conn is not None and not conn.closed:
            # The reader's own acks wait for its next read, to go out together; not after a
            # handler that blocked, when the stand-in is reading and the reader waits for it.
            hold = (
                self._inline
                and threading.get_ident() == self._reader_ident
                and not self._standby.rescuing
            )
            sent, others = conn.send_coalesced(text, hold=hold)
            if sent:
                self._count("acks_sent")
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "ack %s code %d on connection #%d", ack.message_id, ack.code, conn.number
                    )
            if others:
                self._resend(others, away_from=conn, current=current)
            if sent:
                return
        self._send_text_fallback(conn, current, text, ack)

    def _acks_lost(self, count: int) -> None:
        self._count("acks_sent", -count)

    def _resend(
        self, texts: List[str], *, away_from: Connection, current: Optional[Connection]
    ) -> None:
        """Other threads' acks (counted when they were handed in) after a failed write."""
        lost = 0
        for text in texts:
            try:
                if current is None or current is away_from or current.closed:
                    raise ConnectionClosed("no other open connection")
                current.send(text)
            except ConnectionClosed:
                lost += 1
                log.warning("no open connection to ack a message on; DingTalk may deliver it again")
        if lost:
            self._acks_lost(lost)

    def _send_text_fallback(
        self, conn: Connection, current: Optional[Connection], text: str, ack: Ack
    ) -> None:
        for target in (conn, current) if current is not conn else (conn,):
            if target is None or target.closed:
                continue
            try:
                target.send(text)
            except ConnectionClosed:
                continue
            self._count("acks_sent")
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "ack %s code %d on connection #%d", ack.message_id, ack.code, target.number
                )
            return
        log.warning(
            "no open connection to ack message %s on; DingTalk may deliver it again",
            ack.message_id,
        )

    # -- shutting down -------------------------------------------------------------------
    def _shutdown(self) -> None:
        self._stopping.set()
        try:
            self._drain()
            self._pool.close()
            self._standby.close()
            with self._lock:
                retiring, self._retiring = self._retiring, []
            for reader in retiring:
                reader.join(self.config.recv_timeout + 1.0)
            conn = self._current
            if conn is not None:
                self._drop_current(conn)
            if self._keepalive is not None:
                self._keepalive.stop()
            if self._http is not None:
                self._http.close()
            if self._owns_api and self.api is not None:
                self.api.close()
        finally:
            with self._lock:
                self._state = "stopped"
            self._done.set()
            log.info("stopped")

    def _drain(self) -> None:
        with self._lock:
            if self._drain_deadline is None:
                self._drain_deadline = self._clock() + self.config.drain_timeout
        pool = self._pool
        while pool.in_flight and not self._hard:
            deadline = self._drain_deadline  # stop() may bring it forward meanwhile
            left = (deadline if deadline is not None else 0.0) - self._clock()
            if left <= 0:
                log.warning(
                    "%d handler(s) still running after the drain timeout; their acks "
                    "will not be sent",
                    pool.in_flight,
                )
                self._hard = True  # queued frames are skipped: DingTalk redelivers them
                break
            pool.wait_idle(min(left, 0.1))
