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

A client given a ``name`` puts it in each of its threads' names (``dingsync-sales-reader``,
``dingsync-sales-handler-1``...), so that log lines of several clients in one process can be
told apart by ``%(threadName)s`` (dingworker tags them ``app=<name>``).

Stopping ends intake at once; frames that arrive afterwards are neither run nor acked, so
DingTalk delivers them again (an ack would claim work never done). Running handlers finish and
are acked while the readers read and the keepalive pings, until the pool is idle or the
timeout is up; then the connections close.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from ..config import Credentials, Endpoints, StreamConfig
from ..context import WebhookPoster
from ..dedupe import Deduper, DedupeStore, MemoryDedupeStore
from ..errors import ConfigurationError, StreamError
from ..frames import Ack
from ..handling import Jobs
from ..routing import Router
from .connection import Connection
from .gateway import Connector
from .liveness import Counters, Keepalive, StreamStats, assess
from .reader import Reader
from .workers import HandlerPool

if TYPE_CHECKING:
    import requests

    from ..api import ApiClient

__all__ = ["StreamClient", "StreamStats"]

log = logging.getLogger("dingsync.stream")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


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
        name: this client's label when a process runs several, put in its threads' names
            (``dingsync-<name>-reader``...): letters, digits, ``_``, ``-`` and ``.``, at most 40.

    Raises:
        ConfigurationError: ``name`` is not such a label.

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
        name: Optional[str] = None,
    ) -> None:
        if name is not None and not _NAME.fullmatch(name):
            raise ConfigurationError(
                f"StreamClient name {name!r}: use letters, digits, _, - and . (at most 40)"
            )
        self.name = name
        threads = f"dingsync-{name}" if name else "dingsync"
        self._threads = threads
        self.credentials = credentials
        self.router = router
        self.endpoints = endpoints if endpoints is not None else Endpoints.from_env()
        self.config = config = config if config is not None else StreamConfig()
        self.dedupe: DedupeStore = (
            dedupe
            if dedupe is not None
            else MemoryDedupeStore(ttl=config.dedupe_ttl, max_entries=config.dedupe_max_entries)
        )
        self._owns_api = api is None
        self.api = api if api is not None else self._default_api()
        self._clock = clock
        self._lock = threading.Lock()
        self._state = "new"
        self._thread: Optional[threading.Thread] = None
        self._reader_ident: Optional[int] = None
        self._stopping = threading.Event()  # no more intake
        self._hard = False  # handlers not started yet are skipped; connections are cut
        self._deadline: Optional[float] = None  # of the drain, on self._clock
        self._drained = threading.Event()  # the keepalive ended the drain
        self._done = threading.Event()  # run_forever has returned
        self._counters = Counters()
        self._jobs = Jobs(
            router,
            Deduper(self.dedupe),
            client_id=credentials.client_id,
            api=self.api,
            poster=None,  # set when the HTTP session exists
            send_ack=self._send_ack,
            count=self._counters.add,
            skip=lambda: self._hard,
        )
        self._pool = HandlerPool(
            self._jobs.run,
            size=config.concurrency,
            capacity=config.concurrency + config.max_pending,
            name=f"{threads}-handler",
            on_idle=self._on_idle,
            on_backlog=lambda: self._keepalive.wake(),
        )
        self._reader = Reader(
            credentials=credentials,
            endpoints=self.endpoints,
            router=router,
            config=config,
            pool=self._pool,
            counters=self._counters,
            stopping=self._stopping,
            clock=clock,
            sleep=sleep,
            connector=connector,
            threads=threads,
        )
        self._keepalive = Keepalive(
            self._reader.open_connections,
            interval=config.ping_interval,
            dead_after=config.dead_after,
            clock=clock,
            tick=self._tick,
            name=f"{threads}-keepalive",
        )
        self._http: Optional[requests.Session] = None
        self.error: Optional[BaseException] = None

    def _default_api(self) -> ApiClient:
        from ..api import ApiClient

        # No I/O here: the token is fetched the first time a handler uses ctx.api. One pooled
        # connection per handler thread: none is discarded when they all send at once.
        return ApiClient(
            self.credentials,
            endpoints=self.endpoints,
            proxy=self.config.proxy,
            ca_bundle=self.config.ca_bundle,
            pool_size=self.config.concurrency,
        )

    def __repr__(self) -> str:
        return (
            f"StreamClient({f'name={self.name!r}, ' if self.name else ''}"
            f"client_id={self.credentials.client_id!r}, "
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
                    self._reader.receive()
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
                target=self._run_in_background, name=f"{self._threads}-reader", daemon=True
            )
        self._thread.start()
        self._reader.first_attempt.wait()
        if self._reader.first_failure is not None:
            self._thread.join()
            raise self._reader.first_failure
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
            or threading.current_thread().name.startswith(f"{self._threads}-")
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
        conn = self._reader.current
        return conn is not None and not conn.closed

    @property
    def last_error(self) -> Optional[BaseException]:
        """The error that ended the last connection or connection attempt (None once
        connected again).

        Example:
            >>> client.last_error  # doctest: +SKIP
        """
        return self._reader.last_error

    @property
    def stats(self) -> StreamStats:
        """A frozen snapshot of the counters (see :class:`StreamStats`).

        Example:
            >>> client.stats.in_flight  # doctest: +SKIP
            0
        """
        conn = self._reader.current
        self._counters.at("last_alive_at", None if conn is None else conn.last_alive)
        return self._counters.snapshot(
            in_flight=self._pool.in_flight, connected=conn is not None and not conn.closed
        )

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

    # -- running -------------------------------------------------------------------------
    def _begin(self) -> None:
        import requests

        self._http = http = self._reader.http = requests.Session()
        # Every handler thread may reply at once: one pooled connection each, none discarded.
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=self.config.concurrency)
        http.mount("https://", adapter)
        http.mount("http://", adapter)
        proxy = self.config.proxy
        self._jobs.poster = WebhookPoster(
            http,
            timeout=self.config.open_timeout,
            verify=self.config.ca_bundle or True,
            proxies={"http": proxy, "https": proxy} if proxy else None,
        )
        self._pool.start()
        self._keepalive.start()
        subs = self.router.subscriptions()
        if not subs:
            log.warning("the router has no handlers: DingTalk will push nothing but SYSTEM frames")
        log.info(
            "starting for client id %s: %s; each push goes to ONE of the app's open connections",
            self.credentials.client_id,
            ", ".join(f"{s['type']} {s['topic']}" for s in subs) or "no subscriptions",
        )

    def _send_ack(self, conn: Connection, ack: Ack) -> None:
        self._reader.send_ack(conn, ack)

    # -- stopping ------------------------------------------------------------------------
    def _on_idle(self) -> None:
        if self._stopping.is_set():
            self._keepalive.wake()

    def _tick(self, now: float) -> Optional[float]:
        """On the keepalive: grow the pool if handlers stall, and end a drain; returns when
        to look again."""
        dues = [d for d in (self._pool.grow_if_stalled(now), self._drain_tick(now)) if d]
        return min(dues) if dues else None

    def _drain_tick(self, now: float) -> Optional[float]:
        """End the drain once no handler runs or time is up; else return the deadline."""
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
        for conn in self._reader.open_connections():
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
            for conn in self._reader.open_connections():
                self._reader.forget(conn)
            self._reader.join_retiring(1.0)
            if self._http is not None:
                self._http.close()
            if self._owns_api and self.api is not None:
                self.api.close()
        finally:
            with self._lock:
                self._state = "stopped"
            self._reader.first_attempt.set()
            self._done.set()
            log.info("stopped")
