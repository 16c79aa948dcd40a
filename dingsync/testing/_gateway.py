"""The Stream gateway side of the emulator: tickets, websocket connections, pushes, acks, SYSTEM
frames, redelivery and session webhooks.

Threads, per running emulator: one accept loop (``websockets.sync.server``), one timer thread
(redelivery and delayed closes), and per connection the library's reader thread, its handler
thread (which reads acks) and one sender thread of ours. Pushes are serialised once, by the caller,
and queued on the chosen connection's outbox; the sender thread writes them. Every piece of shared
state is guarded by ``_gw_lock``; ``_gw_cond`` (on the same lock) wakes the ``wait_*`` helpers.

Example:
    >>> from dingsync.testing import FakeDingTalk
    >>> with FakeDingTalk() as fake:
    ...     mid = fake.push_chatbot("hello")   # no client yet: kept pending
    ...     [p.message_id for p in fake.pending] == [mid]
    True
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import random
import secrets
import socket
import threading
import time
import uuid
import weakref
from collections import deque
from functools import partial
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ClassVar,
    Deque,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
    cast,
)
from urllib.parse import parse_qs, urlsplit

import attrs
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse
from websockets.protocol import State
from websockets.sync.server import Server, ServerConnection, serve

from . import payloads

__all__ = [
    "GatewayMixin",
    "AckFrame",
    "Connection",
    "OpenRequest",
    "Pong",
    "PreparedFrame",
    "Push",
    "PushStats",
    "Redelivery",
    "Reply",
    "Subscription",
]


# A random token stands in for the connectionId header while a frame is serialised before its
# connection is chosen; the sender swaps it for the real id (one str.replace per frame).
_CONN_PLACEHOLDER = "conn-" + secrets.token_hex(12)

# websockets logs only on bugs (handler crashes); the emulator must stay silent otherwise.
_WS_LOGGER = logging.getLogger("dingsync.testing.gateway")
_WS_LOGGER.addHandler(logging.NullHandler())


# -- records (what tests assert on) ------------------------------------------------------------


@attrs.frozen
class Subscription:
    """One ``{type, topic}`` entry of an open request."""

    type: str
    topic: str


@attrs.frozen
class OpenRequest:
    """One well-formed ``/v1.0/gateway/connections/open`` call (the secret is never kept)."""

    client_id: str
    subscriptions: Tuple[Subscription, ...]
    ua: Optional[str]
    local_ip: Optional[str]
    extras: Optional[Mapping[str, Any]]
    user_agent: Optional[str]
    status: int
    at: float
    ticket: Optional[str] = attrs.field(default=None, repr=False)


@attrs.define(eq=False, repr=False)
class Connection:
    """One websocket connection to the fake gateway (``FakeDingTalk.connections``).

    Times are on the emulator clock. ``draining`` = a disconnect was sent; ``stalled`` = zombie.
    """

    id: str
    client_id: str
    subscriptions: Tuple[Subscription, ...]
    ua: Optional[str]
    local_ip: Optional[str]
    ticket_issued_at: float
    opened_at: float
    ticket: str = attrs.field(repr=False)
    closed_at: Optional[float] = None
    close_code: Optional[int] = None
    draining: bool = False
    stalled: bool = False
    frames_sent: int = 0
    _ws: Optional[_WsConnection] = attrs.field(default=None, init=False)
    _cond: Optional[threading.Condition] = attrs.field(default=None, init=False)
    _outbox: Deque[Push] = attrs.field(factory=deque, init=False)
    _control: Deque[Tuple[int, str]] = attrs.field(factory=deque, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _closed: threading.Event = attrs.field(factory=threading.Event, init=False)
    _subs: frozenset[Tuple[str, str]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._subs = frozenset((s.type, s.topic) for s in self.subscriptions)

    @property
    def alive(self) -> bool:
        """True until the connection is closed (a draining connection is still alive)."""
        return self.closed_at is None

    def accepts(self, type_: str, topic: str) -> bool:
        """Whether a push of this type/topic may be routed here (its subscriptions say so)."""
        if type_ not in ("EVENT", "CALLBACK"):
            return True
        return (type_, topic) in self._subs or (type_ == "EVENT" and ("EVENT", "*") in self._subs)

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """Block until the connection is closed; False on timeout."""
        return self._closed.wait(timeout)

    def __repr__(self) -> str:
        subs = ",".join(f"{s.type}:{s.topic}" for s in self.subscriptions)
        state = "stalled" if self.stalled else "draining" if self.draining else ""
        alive = "alive" if self.alive else f"closed({self.close_code})"
        return f"<Connection {self.id} {alive} {state} [{subs}]>".replace("  ", " ")


@attrs.define(eq=False, repr=False)
class Push:
    """One pushed frame and what became of it (``FakeDingTalk.pushes``).

    ``state``: ``pending`` (no connection), ``queued``, ``sent`` or ``dropped`` (a SYSTEM frame
    whose connection closed first). ``attempts`` counts redeliveries.
    """

    message_id: str
    type: str
    topic: str
    text: str
    pushed_at: float
    templated: bool = False
    target: Optional[Connection] = None
    state: str = "queued"
    delivered_to: List[str] = attrs.field(factory=list)
    attempts: int = 0
    acked: bool = False

    @property
    def frame(self) -> Any:
        """The frame as sent (decoded; the connectionId header is a placeholder here)."""
        return json.loads(self.text)

    @property
    def data(self) -> Any:
        """The decoded ``data`` of the frame."""
        frame = self.frame
        return json.loads(frame["data"]) if isinstance(frame, dict) else None

    def __repr__(self) -> str:
        return (
            f"<Push {self.type} {self.topic} {self.message_id} {self.state}"
            f" to={self.delivered_to} acked={self.acked}>"
        )


@attrs.frozen
class PreparedFrame:
    """A frame serialised ahead of time (see ``prepare_chatbot``/``preserialize``)."""

    message_id: str
    type: str
    topic: str
    text: str = attrs.field(repr=False)
    templated: bool = False


class AckFrame(Dict[str, Any]):
    """A decoded ack frame (a dict) plus where and when it arrived."""

    connection_id: str = ""
    received_at: float = 0.0


@attrs.frozen
class Pong:
    """The reply to a SYSTEM ping: ``matched`` when the client echoed the right ``opaque``."""

    message_id: str
    expected: Optional[str]
    echoed: Any
    connection_id: str
    at: float

    @property
    def matched(self) -> bool:
        return self.expected is not None and self.echoed == self.expected


@attrs.frozen
class Redelivery:
    """An un-acked frame pushed again (same messageId)."""

    message_id: str
    attempt: int
    at: float
    previous_connections: Tuple[str, ...]


@attrs.frozen
class Reply:
    """A message posted to a session webhook (``FakeDingTalk.replies``)."""

    session: str = attrs.field(repr=False)
    message_id: str
    msg_id: str
    conversation_id: str
    msgtype: str
    body: Dict[str, Any]
    at: float

    @property
    def text(self) -> Optional[str]:
        """The text of a text/markdown/actionCard/link reply."""
        part = self.body.get(self.msgtype)
        if isinstance(part, dict):
            value = part.get("content", part.get("text"))
            return value if isinstance(value, str) else None
        return None


@attrs.frozen
class PushStats:
    """Sender throughput since ``reset_push_stats()``."""

    frames_sent: int
    seconds: float
    sender_cpu_seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames_sent / self.seconds if self.seconds > 0 else 0.0


ConnectionRef = Union[Connection, str, None]
FrameLike = Union[Mapping[str, Any], str]


@attrs.define(eq=False)
class _Ticket:
    value: str = attrs.field(repr=False)
    request: OpenRequest
    issued_at: float
    used: bool = False


@attrs.define(eq=False)
class _Session:
    token: str = attrs.field(repr=False)
    message_id: str
    msg_id: str
    conversation_id: str
    expires_at_ms: int


class _Scheduler:
    """One timer thread for every delayed action (redelivery checks, delayed closes)."""

    def __init__(self) -> None:
        self._heap: List[Tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="dingsync-fake-timer", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    wait: Optional[float] = None
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            fn = heapq.heappop(self._heap)[2]
                            break
                    self._cond.wait(wait)
            try:
                fn()
            except Exception:  # noqa: S110 - one failing timer must not stop the others
                pass

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        self._thread.join(timeout=1.0)


class _GatedSocket:
    """Wraps the accepted socket so that reading can be paused (a zombie connection).

    websockets answers pings from its reader thread; pausing ``recv`` is the only way to stop the
    pongs without patching the library, and it is what a hung peer looks like on the wire.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.raw = sock
        self._open = threading.Event()
        self._open.set()

    def pause(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def abort(self) -> None:
        """Shut the TCP connection down without a close frame."""
        try:
            self.raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._open.set()

    def recv(self, bufsize: int) -> bytes:
        self._open.wait()
        return self.raw.recv(bufsize)

    def close(self) -> None:
        self._open.set()
        self.raw.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class _WsConnection(ServerConnection):
    owner: ClassVar[Optional[GatewayMixin]] = None

    def __init__(self, sock: socket.socket, protocol: Any, server: Server, **kwargs: Any) -> None:
        self.gate = _GatedSocket(sock)
        self.ticket: Optional[_Ticket] = None
        owner = self.owner
        if owner is not None:
            # Read per connection, so the keepalive knob is live.
            kwargs["ping_interval"] = owner.keepalive_interval
            kwargs["ping_timeout"] = owner.keepalive_timeout
            kwargs["close_timeout"] = owner.close_timeout
            owner._ws_all.add(self)
        super().__init__(cast(socket.socket, self.gate), protocol, server, **kwargs)


def _hard_close(ws: _WsConnection, code: int, reason: str) -> None:
    """Send a close frame and shut the socket at once, without waiting for the peer's echo.

    A sender blocked in ``sendall`` (peer not reading, buffers full) holds the protocol mutex;
    then the close frame is skipped and ``shutdown`` wakes the sender, so stop() never hangs.
    """
    ws.gate.resume()
    if ws.protocol_mutex.acquire(timeout=0.2):
        try:
            ws.gate.raw.settimeout(0.2)
            if ws.protocol.state is State.OPEN:
                ws.protocol.send_close(code, reason)
                ws.send_data()
        except Exception:  # noqa: S110 - the socket is being torn down anyway
            pass
        finally:
            ws.protocol_mutex.release()
    try:
        ws.gate.raw.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    ws.close_socket()


def _close_code(ws: ServerConnection) -> int:
    """The code of the close as the server saw it: the peer's, else ours, else 1006 (abrupt)."""
    protocol = ws.protocol
    close = protocol.close_rcvd or protocol.close_sent
    return int(close.code) if close is not None else 1006


def _reject(ws: ServerConnection, status: int, code: str, message: str) -> WsResponse:
    body = json.dumps({"code": code, "message": message, "requestid": str(uuid.uuid4()).upper()})
    response = ws.respond(status, body)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json;charset=utf-8"
    return response


def _decode_json_string(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def _ack_problems(obj: Mapping[str, Any]) -> List[str]:
    """Strict ack shape (protocol.md §3.1); each problem starts with the field it names."""
    problems: List[str] = []
    code = obj.get("code")
    if "code" not in obj:
        problems.append("code: missing")
    elif not isinstance(code, int) or isinstance(code, bool):
        problems.append(f"code: expected an int, got {type(code).__name__}")
    headers = obj.get("headers")
    if not isinstance(headers, dict):
        problems.append("headers: missing or not an object")
    else:
        for name in ("messageId", "contentType"):
            if name not in headers:
                problems.append(f"headers.{name}: missing")
            elif not isinstance(headers[name], str):
                problems.append(
                    f"headers.{name}: expected a string, got {type(headers[name]).__name__}"
                )
    if "message" not in obj:
        problems.append("message: missing")
    elif not isinstance(obj["message"], str):
        problems.append(f"message: expected a str, got {type(obj['message']).__name__}")
    if "data" not in obj:
        # Java omits data on its 500 answers (null fields are not serialised).
        if not (isinstance(code, int) and code != 200):
            problems.append("data: missing")
    elif not isinstance(obj["data"], str):
        problems.append(f"data: expected a JSON string, got {type(obj['data']).__name__}")
    elif obj["data"] and _decode_json_string(obj["data"]) is None and obj["data"] != "null":
        # "" is tolerated: the Go SDK sends the handler's raw (often empty) bytes.
        problems.append("data: not valid JSON")
    return problems


class GatewayMixin:
    """Stream gateway: tickets, websocket connections, pushes, acks, SYSTEM frames, redelivery.

    Knobs are plain attributes, read when they matter, so they can change mid-test:
    ``ticket_ttl`` (90 s, emulator clock), ``redeliver_events_after`` /
    ``redeliver_callbacks_after`` (seconds of real time before an un-acked frame is pushed again;
    None = never, the default), ``keepalive_interval`` / ``keepalive_timeout`` (server-initiated
    websocket pings for connections opened afterwards; off by default), ``close_timeout``.
    """

    if TYPE_CHECKING:
        client_id: str
        client_secret: str
        seed: Optional[int]

        def now(self) -> float: ...

        def now_ms(self) -> int: ...

        @property
        def oapi_base(self) -> str: ...

    # -- state -----------------------------------------------------------------------------
    def _init_state(self) -> None:
        self._gw_lock = threading.RLock()
        self._gw_cond = threading.Condition(self._gw_lock)
        self._rng = random.Random(self.seed)
        self.app_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        self.corp_id = "dingtestcorp"
        self.ticket_ttl = 90.0
        self.redeliver_events_after: Optional[float] = None
        self.redeliver_callbacks_after: Optional[float] = None
        self.keepalive_interval: Optional[float] = None
        self.keepalive_timeout: Optional[float] = 20.0
        self.close_timeout = 1.0
        self.open_requests: List[OpenRequest] = []
        self.connections: List[Connection] = []
        self.pushes: List[Push] = []
        self.acks: List[AckFrame] = []
        self.violations: List[str] = []
        self.pongs: List[Pong] = []
        self.redeliveries: List[Redelivery] = []
        self.replies: List[Reply] = []
        self.handshake_rejections: List[Tuple[int, str]] = []
        self._live: List[Connection] = []
        self._conn_by_id: Dict[str, Connection] = {}
        self._tickets: Dict[str, _Ticket] = {}
        self._by_id: Dict[str, Push] = {}
        self._first_ack: Dict[str, AckFrame] = {}
        self._ping_opaque: Dict[str, str] = {}
        self._pending: List[Push] = []
        self._sessions: Dict[str, _Session] = {}
        self._session_by_mid: Dict[str, _Session] = {}
        self._card_pushes: Dict[str, Tuple[str, str]] = {}
        self._ws_all: weakref.WeakSet[_WsConnection] = weakref.WeakSet()
        self._ws_server: Optional[Server] = None
        self._ws_thread: Optional[threading.Thread] = None
        self._scheduler: Optional[_Scheduler] = None
        self._gw_stopping = False
        self._sender_seq = itertools.count(1)
        self._stat_frames = 0
        self._stat_cpu = 0.0
        self._stat_started: Optional[float] = None
        self._stat_last: Optional[float] = None

    def _on_start(self) -> None:
        fake = self

        class _Bound(_WsConnection):
            owner = fake

        self._gw_stopping = False
        self._scheduler = _Scheduler()
        server = serve(
            self._ws_handler,
            "127.0.0.1",
            0,
            process_request=self._ws_process_request,
            create_connection=_Bound,
            compression=None,
            ping_interval=None,
            open_timeout=2.0,
            max_queue=None,
            server_header=None,
            logger=_WS_LOGGER,
        )
        self._ws_server = server
        self._ws_thread = threading.Thread(
            target=server.serve_forever, name="dingsync-fake-gateway", daemon=True
        )
        self._ws_thread.start()

    def _on_stop(self) -> None:
        with self._gw_lock:
            self._gw_stopping = True
            for conn in self._live:
                conn.stalled = False
            self._gw_cond.notify_all()
        for ws in list(self._ws_all):
            _hard_close(ws, 1001, "")
        if self._ws_server is not None:
            self._ws_server.shutdown(close_connections=False)
        if self._ws_thread is not None:
            self._ws_thread.join(timeout=1.0)
        if self._scheduler is not None:
            self._scheduler.stop()
        self._ws_server = self._ws_thread = self._scheduler = None

    @property
    def ws_endpoint(self) -> str:
        """The ``endpoint`` handed out with tickets: ``ws://127.0.0.1:<port>/connect``."""
        if self._ws_server is None:
            raise RuntimeError(
                "FakeDingTalk is not started; call start() or use it as a context manager"
            )
        port = self._ws_server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/connect"

    # -- tickets (called by routes/gateway.py) ---------------------------------------------
    def _record_open(self, request: OpenRequest, *, issue: bool) -> Optional[str]:
        ticket: Optional[str] = None
        if issue:
            ticket = str(uuid.uuid4())
            request = attrs.evolve(request, ticket=ticket)
        with self._gw_lock:
            self.open_requests.append(request)
            if ticket is not None:
                self._tickets[ticket] = _Ticket(ticket, request, request.at)
            self._gw_cond.notify_all()
        return ticket

    def _ws_process_request(self, ws: ServerConnection, request: WsRequest) -> Optional[WsResponse]:
        parts = urlsplit(request.path)
        if parts.path != "/connect":
            return self._rejected(ws, 404, "notFound", f"no websocket endpoint at {parts.path}")
        value = (parse_qs(parts.query).get("ticket") or [""])[0]
        with self._gw_lock:
            if self._gw_stopping:
                return self._rejected(ws, 503, "serviceUnavailable", "gateway is shutting down")
            ticket = self._tickets.get(value)
            if ticket is None:
                return self._rejected(ws, 401, "invalidTicket", "ticket is missing or unknown")
            if ticket.used:
                return self._rejected(ws, 403, "ticketUsed", "ticket has already been used")
            if self.now() > ticket.issued_at + self.ticket_ttl:
                return self._rejected(ws, 403, "ticketExpired", "ticket has expired")
            ticket.used = True
        cast(_WsConnection, ws).ticket = ticket
        return None

    def _rejected(self, ws: ServerConnection, status: int, code: str, message: str) -> WsResponse:
        with self._gw_lock:
            self.handshake_rejections.append((status, code))
        return _reject(ws, status, code, message)

    # -- connections -----------------------------------------------------------------------
    def _ws_handler(self, ws: ServerConnection) -> None:
        wsc = cast(_WsConnection, ws)
        ticket = wsc.ticket
        if ticket is None:
            return
        req = ticket.request
        conn = Connection(
            id=str(uuid.uuid4()),
            client_id=req.client_id,
            subscriptions=req.subscriptions,
            ua=req.ua,
            local_ip=req.local_ip,
            ticket=ticket.value,
            ticket_issued_at=ticket.issued_at,
            opened_at=self.now(),
        )
        conn._ws = wsc
        conn._cond = threading.Condition(self._gw_lock)
        sender = threading.Thread(
            target=self._sender_loop,
            args=(conn,),
            daemon=True,
            name=f"dingsync-fake-sender-{next(self._sender_seq)}",
        )
        with self._gw_lock:
            if self._gw_stopping:
                return
            self.connections.append(conn)
            self._live.append(conn)
            self._conn_by_id[conn.id] = conn
            self._flush_pending_locked()
            self._gw_cond.notify_all()
        sender.start()
        try:
            while True:
                try:
                    raw = ws.recv()
                except ConnectionClosed:
                    break
                self._on_client_frame(conn, raw)
        finally:
            with self._gw_lock:
                self._end_locked(conn, _close_code(ws))
            sender.join(timeout=2.0)

    def _end_locked(self, conn: Connection, code: Optional[int]) -> None:
        if conn.close_code is None:
            conn.close_code = code
        if conn._closing:
            return
        conn._closing = True
        conn.closed_at = self.now()
        if conn in self._live:
            self._live.remove(conn)
        leftover = list(conn._outbox)
        conn._outbox.clear()
        conn._control.clear()
        for push in leftover:
            self._route_locked(push)
        assert conn._cond is not None
        conn._cond.notify_all()
        conn._closed.set()
        self._gw_cond.notify_all()

    def _sender_loop(self, conn: Connection) -> None:
        ws = conn._ws
        cond = conn._cond
        assert ws is not None and cond is not None
        while True:
            control: Optional[Tuple[int, str]] = None
            batch: List[Push] = []
            with self._gw_lock:
                while True:
                    if conn._closing:
                        return
                    if conn._control:
                        control = conn._control.popleft()
                        break
                    if conn._outbox and not conn.stalled:
                        batch = list(conn._outbox)
                        conn._outbox.clear()
                        break
                    cond.wait()
            if control is not None:
                try:
                    ws.close(*control)  # waits for the peer's close frame, up to close_timeout
                except Exception:  # noqa: S110 - a failed close still ends the connection
                    pass
                continue
            self._send_batch(conn, ws, batch)

    def _send_batch(self, conn: Connection, ws: _WsConnection, batch: List[Push]) -> None:
        cpu0 = time.thread_time()
        cid = conn.id
        sent = 0
        broken = False
        for push in batch:
            if (
                conn.stalled
                or conn._closing
                or (conn.draining and push.type != "SYSTEM" and push.target is not conn)
            ):
                break
            text = push.text.replace(_CONN_PLACEHOLDER, cid) if push.templated else push.text
            try:
                ws.send(text)
            except (ConnectionClosed, OSError, RuntimeError):
                broken = True
                break
            sent += 1
        cpu = time.thread_time() - cpu0
        finished = time.perf_counter()
        with self._gw_lock:
            for push in batch[:sent]:
                push.state = "sent"
                push.delivered_to.append(cid)
                after = self._redeliver_after(push.type)
                if after is not None and self._scheduler is not None:
                    self._scheduler.call_later(
                        after, partial(self._maybe_redeliver, push, push.attempts)
                    )
            conn.frames_sent += sent
            self._stat_frames += sent
            self._stat_cpu += cpu
            if sent:
                self._stat_last = finished
            rest = batch[sent:]
            if broken:
                self._end_locked(conn, None)
            keep = [
                p
                for p in rest
                if not conn._closing
                and (p.type == "SYSTEM" or (conn.stalled and not conn.draining))
            ]
            conn._outbox.extendleft(reversed(keep))
            kept = {id(p) for p in keep}
            for push in rest:
                if id(push) not in kept:
                    self._route_locked(push)
            self._gw_cond.notify_all()

    # -- routing ---------------------------------------------------------------------------
    def _route_locked(self, push: Push) -> None:
        target = push.target
        if target is not None:
            if not target._closing:
                self._enqueue_locked(target, push)
                return
            push.target = None
        if push.type == "SYSTEM":  # a ping or disconnect belongs to the connection it was for
            push.state = "dropped"
            return
        candidates = [
            c
            for c in self._live
            if not c.draining
            and not c.stalled
            and not c._closing
            and c.accepts(push.type, push.topic)
        ]
        if not candidates:
            push.state = "pending"
            self._pending.append(push)
            self._gw_cond.notify_all()
            return
        conn = candidates[0] if len(candidates) == 1 else self._rng.choice(candidates)
        self._enqueue_locked(conn, push)

    def _enqueue_locked(self, conn: Connection, push: Push) -> None:
        push.state = "queued"
        conn._outbox.append(push)
        assert conn._cond is not None
        conn._cond.notify()

    def _flush_pending_locked(self) -> None:
        pending, self._pending = self._pending, []
        for push in pending:
            self._route_locked(push)

    def _submit(self, pushes: Iterable[Push]) -> None:
        with self._gw_lock:
            for push in pushes:
                self.pushes.append(push)
                self._by_id[push.message_id] = push
                if self._stat_started is None:
                    self._stat_started = time.perf_counter()
                self._route_locked(push)

    def _resolve(self, connection: ConnectionRef) -> Connection:
        with self._gw_lock:
            if connection is None:
                live = [c for c in self._live if not c._closing]
                if not live:
                    raise RuntimeError(
                        "no live connection to the fake gateway (see wait_for_connections())"
                    )
                fresh = [c for c in live if not c.draining]
                return (fresh or live)[-1]
            conn = (
                connection
                if isinstance(connection, Connection)
                else self._conn_by_id.get(connection)
            )
            if conn is None:
                raise KeyError(f"unknown connection {connection!r}")
            if conn._closing:
                raise RuntimeError(f"connection {conn.id} is closed")
            return conn

    def _redeliver_after(self, type_: str) -> Optional[float]:
        if type_ == "EVENT":
            return self.redeliver_events_after
        if type_ == "CALLBACK":
            return self.redeliver_callbacks_after
        return None

    def _maybe_redeliver(self, push: Push, attempt: int) -> None:
        with self._gw_lock:
            if self._gw_stopping or push.acked or push.attempts != attempt or push.state != "sent":
                return
            push.attempts += 1
            self.redeliveries.append(
                Redelivery(push.message_id, push.attempts, self.now(), tuple(push.delivered_to))
            )
            push.target = None
            self._route_locked(push)
            self._gw_cond.notify_all()

    # -- pushes ----------------------------------------------------------------------------
    def push_chatbot(
        self,
        text: str = "hi",
        *,
        conversation_type: str = "1",
        sender_staff_id: str = "user-1",
        sender_nick: Optional[str] = None,
        conversation_id: Optional[str] = None,
        msgtype: str = "text",
        content: Optional[Mapping[str, Any]] = None,
        at_users: Iterable[Union[str, Mapping[str, Any]]] = (),
        session_webhook_ttl: float = 5400.0,
        msg_id: Optional[str] = None,
        connection: ConnectionRef = None,
        **extra_fields: Any,
    ) -> str:
        """Push a chatbot message (topic ``/v1.0/im/bot/messages/get``); returns its messageId.

        The message carries a live ``sessionWebhook`` on this emulator that expires
        ``session_webhook_ttl`` seconds after ``createAt`` (emulator clock). ``msgtype`` may be any
        of ``payloads.CHATBOT_MSGTYPES``; ``extra_fields`` are merged into ``data``. Without a live
        subscribed connection the push waits in ``pending``.

        Example:
            >>> mid = fake.push_chatbot("hello", conversation_type="2")  # doctest: +SKIP
            >>> fake.wait_for_ack(mid)["code"]                            # doctest: +SKIP
            200
        """
        prepared = self._prepare_chatbot(
            text,
            conversation_type=conversation_type,
            sender_staff_id=sender_staff_id,
            sender_nick=sender_nick,
            conversation_id=conversation_id,
            msgtype=msgtype,
            content=content,
            at_users=tuple(at_users),
            session_webhook_ttl=session_webhook_ttl,
            msg_id=msg_id,
            **extra_fields,
        )
        return self._push_prepared([prepared], connection)[0]

    def _prepare_chatbot(
        self, text: str, *, session_webhook_ttl: float = 5400.0, **kwargs: Any
    ) -> PreparedFrame:
        now_ms = self.now_ms()
        token = secrets.token_hex(16)
        expires = now_ms + int(session_webhook_ttl * 1000)
        data = payloads.chatbot_data(
            text,
            robot_code=self.client_id,
            sender_corp_id=self.corp_id,
            session_webhook=f"{self.oapi_base}/robot/sendBySession?session={token}",
            session_webhook_expired_time=expires,
            create_at=now_ms,
            **kwargs,
        )
        mid = payloads.new_message_id(now_ms)
        session = _Session(token, mid, data["msgId"], data["conversationId"], expires)
        with self._gw_lock:
            self._sessions[token] = session
            self._session_by_mid[mid] = session
        frame = payloads.frame(
            "CALLBACK",
            payloads.CHATBOT_TOPIC,
            data,
            message_id=mid,
            time_ms=now_ms,
            headers={"appId": self.app_id, "connectionId": _CONN_PLACEHOLDER},
        )
        return PreparedFrame(
            mid, "CALLBACK", payloads.CHATBOT_TOPIC, payloads.encode_frame(frame), templated=True
        )

    def push_event(
        self,
        event_type: str,
        data: Union[Mapping[str, Any], str],
        *,
        connection: ConnectionRef = None,
        **headers: Any,
    ) -> str:
        """Push an EVENT frame (topic ``"*"``); returns its messageId.

        ``headers`` override the generated ones by wire name (``eventCorpId="ding..."``); values
        are sent as strings.

        Example:
            >>> fake.push_event("user_add_org", {"userId": ["u1"]})  # doctest: +SKIP
            '5f2c9a1e_3_18f...'
        """
        now_ms = self.now_ms()
        hdrs: Dict[str, Any] = payloads.event_headers(
            event_type, born_ms=now_ms, corp_id=self.corp_id, unified_app_id=self.app_id
        )
        hdrs.update(headers)
        frame = payloads.frame("EVENT", payloads.EVENT_TOPIC, data, headers=hdrs, time_ms=now_ms)
        return self._push_prepared([self._prepare_raw(frame)], connection)[0]

    def push_card_callback(
        self,
        out_track_id: str,
        params: Mapping[str, Any],
        *,
        user_id: str = "user-1",
        action_ids: Iterable[str] = ("action",),
        space_id: Optional[str] = None,
        connection: ConnectionRef = None,
    ) -> str:
        """Push a card callback (topic ``/v1.0/card/instances/callback``); returns its messageId.

        ``content``/``value`` carry ``{"cardPrivateData": {"actionIds", "params"}}`` as JSON strings.
        If the OpenAPI side defines ``_apply_card_callback_response(out_track_id, user_id,
        response)``, a 200 ack's ``data.response`` is handed to it.

        Example:
            >>> fake.push_card_callback("track-1", {"action": "like"})  # doctest: +SKIP
        """
        now_ms = self.now_ms()
        data = payloads.card_callback_data(
            out_track_id,
            params,
            user_id=user_id,
            action_ids=tuple(action_ids),
            corp_id=self.corp_id,
            space_id=space_id,
        )
        frame = payloads.frame(
            "CALLBACK",
            payloads.CARD_CALLBACK_TOPIC,
            data,
            time_ms=now_ms,
            headers={"appId": self.app_id, "connectionId": _CONN_PLACEHOLDER},
        )
        mid = frame["headers"]["messageId"]
        with self._gw_lock:
            self._card_pushes[mid] = (out_track_id, user_id)
        prepared = PreparedFrame(
            mid,
            "CALLBACK",
            payloads.CARD_CALLBACK_TOPIC,
            payloads.encode_frame(frame),
            templated=True,
        )
        return self._push_prepared([prepared], connection)[0]

    def push_frame(self, frame: FrameLike, *, connection: ConnectionRef = None) -> str:
        """Push any frame as given (a dict, or a string sent byte for byte); returns its messageId.

        Routing uses the frame's ``type`` and ``headers.topic`` when it has them; a frame without
        a ``messageId`` gets a tracking id that the wire never sees. A SYSTEM frame goes to
        ``connection`` (default: the newest live one).

        Example:
            >>> fake.push_frame('{"type":"CALLBACK","headers":{}}')  # doctest: +SKIP
        """
        return self._push_prepared([self._prepare_raw(frame)], connection)[0]

    def _prepare_raw(self, frame: FrameLike) -> PreparedFrame:
        obj: Any
        if isinstance(frame, str):
            text = frame
            obj = _decode_json_string(frame)
        else:
            obj = frame
            text = payloads.encode_frame(frame)
        headers = obj.get("headers") if isinstance(obj, Mapping) else None
        headers = headers if isinstance(headers, Mapping) else {}
        mid = headers.get("messageId")
        type_ = obj.get("type") if isinstance(obj, Mapping) else None
        topic = headers.get("topic")
        return PreparedFrame(
            mid if isinstance(mid, str) else "untracked-" + payloads.new_message_id(),
            type_ if isinstance(type_, str) else "",
            topic if isinstance(topic, str) else "",
            text,
        )

    def preserialize(self, frames: Iterable[FrameLike]) -> List[PreparedFrame]:
        """Serialise frames now so that :meth:`push_many` only has to queue them.

        Example:
            >>> ready = fake.preserialize([payloads.frame("EVENT", "*", {})])  # doctest: +SKIP
            >>> fake.push_many(ready)                                          # doctest: +SKIP
        """
        return [self._prepare_raw(f) for f in frames]

    def prepare_chatbot(
        self, count: int, *, text: str = "message {i}", **kwargs: Any
    ) -> List[PreparedFrame]:
        """Build and serialise ``count`` chatbot frames (``text`` is formatted with ``i``).

        Takes the same keyword arguments as :meth:`push_chatbot` (except ``connection``).

        Example:
            >>> frames = fake.prepare_chatbot(5000)          # doctest: +SKIP
            >>> ids = fake.push_many(frames)                 # doctest: +SKIP
        """
        kwargs.setdefault("at_users", ())
        return [self._prepare_chatbot(text.format(i=i), **kwargs) for i in range(count)]

    def push_many(
        self,
        frames: Union[int, Iterable[Union[PreparedFrame, FrameLike]]],
        *,
        connection: ConnectionRef = None,
        text: str = "message {i}",
    ) -> List[str]:
        """Queue many frames at once (one lock round); returns their messageIds in order.

        ``frames`` is a count of chatbot text messages, or frames (prepared by
        :meth:`prepare_chatbot`/:meth:`preserialize`, or dicts/strings). Progress and speed are in
        :attr:`push_stats`.

        Example:
            >>> ids = fake.push_many(5000)                                           # doctest: +SKIP
            >>> fake.wait_until(lambda: fake.push_stats.frames_sent >= 5000, 30)     # doctest: +SKIP
        """
        if isinstance(frames, int):
            prepared = self.prepare_chatbot(frames, text=text)
        else:
            prepared = [f if isinstance(f, PreparedFrame) else self._prepare_raw(f) for f in frames]
        return self._push_prepared(prepared, connection)

    def _push_prepared(self, prepared: List[PreparedFrame], connection: ConnectionRef) -> List[str]:
        target = self._resolve(connection) if connection is not None else None
        system_target: Optional[Connection] = target
        now = self.now()
        pushes = []
        for p in prepared:
            conn = target
            if p.type == "SYSTEM" and conn is None:
                system_target = system_target or self._resolve(None)
                conn = system_target
            pushes.append(Push(p.message_id, p.type, p.topic, p.text, now, p.templated, conn))
        self._submit(pushes)
        return [p.message_id for p in pushes]

    @property
    def pending(self) -> List[Push]:
        """Pushes waiting for a live connection that subscribed to their topic."""
        with self._gw_lock:
            return list(self._pending)

    @property
    def live_connections(self) -> List[Connection]:
        """Open connections, oldest first (draining ones included)."""
        with self._gw_lock:
            return list(self._live)

    @property
    def push_stats(self) -> PushStats:
        """Frames written so far, the seconds from the first push to the last write, and the CPU
        seconds the sender threads spent (``time.thread_time``)."""
        with self._gw_lock:
            seconds = 0.0
            if self._stat_started is not None and self._stat_last is not None:
                seconds = max(0.0, self._stat_last - self._stat_started)
            return PushStats(self._stat_frames, seconds, self._stat_cpu)

    def reset_push_stats(self) -> None:
        """Start a new measurement for :attr:`push_stats`."""
        with self._gw_lock:
            self._stat_frames = 0
            self._stat_cpu = 0.0
            self._stat_started = None
            self._stat_last = None

    # -- SYSTEM frames and faults ----------------------------------------------------------
    def ping(self, connection: ConnectionRef = None) -> str:
        """Send a SYSTEM ``ping`` with a fresh ``opaque``; returns its messageId.

        The echo is checked when the reply arrives (``pongs``; a mismatch is a violation).

        Example:
            >>> mid = fake.ping()                                      # doctest: +SKIP
            >>> fake.wait_for_ack(mid)["data"]                         # doctest: +SKIP
            '{"opaque": "..."}'
        """
        conn = self._resolve(connection)
        opaque = str(uuid.uuid4())
        frame = payloads.frame("SYSTEM", "ping", payloads.ping_data(opaque), time_ms=self.now_ms())
        mid = frame["headers"]["messageId"]
        with self._gw_lock:
            self._ping_opaque[mid] = opaque
        return self._push_prepared([self._prepare_raw(frame)], conn)[0]

    def disconnect(
        self,
        close_after: float = 10.0,
        connection: ConnectionRef = None,
        *,
        reason: str = "persistent connection is timeout",
    ) -> str:
        """Send SYSTEM ``disconnect``, push nothing more to that connection, close it later.

        Queued and new pushes go to other (or future) connections at once; the websocket is
        closed ``close_after`` seconds later (real time) unless the client closes it first.
        Returns the disconnect frame's messageId.

        Example:
            >>> fake.disconnect(close_after=0.2)                     # doctest: +SKIP
        """
        conn = self._resolve(connection)
        frame = payloads.frame(
            "SYSTEM", "disconnect", payloads.disconnect_data(reason), time_ms=self.now_ms()
        )
        prepared = self._prepare_raw(frame)
        push = Push(
            prepared.message_id, "SYSTEM", "disconnect", prepared.text, self.now(), False, conn
        )
        with self._gw_lock:
            conn.draining = True
            moved = [p for p in conn._outbox if p.type != "SYSTEM" and p.target is not conn]
            kept = [p for p in conn._outbox if p.type == "SYSTEM" or p.target is conn]
            conn._outbox.clear()
            conn._outbox.extend(kept)
            self._submit([push])
            for p in moved:
                self._route_locked(p)
        if self._scheduler is not None:
            self._scheduler.call_later(close_after, partial(self._close_later, conn))
        return push.message_id

    def _close_later(self, conn: Connection) -> None:
        with self._gw_lock:
            if not conn._closing and conn._cond is not None:
                conn._control.append((1000, ""))
                conn._cond.notify()

    def drop(self, connection: ConnectionRef = None) -> Connection:
        """Kill a connection abruptly: TCP shut down, no close frame. Returns it.

        Example:
            >>> fake.drop()                                          # doctest: +SKIP
        """
        conn = self._resolve(connection)
        with self._gw_lock:
            self._end_locked(conn, 1006)
        if conn._ws is not None:
            conn._ws.gate.abort()
        return conn

    def stall(self, connection: ConnectionRef = None) -> Connection:
        """Make a connection a zombie: TCP stays open, nothing is pushed, pings get no pong.

        New pushes go elsewhere (or wait in ``pending``) until :meth:`resume`.

        Example:
            >>> conn = fake.stall(); fake.resume()                   # doctest: +SKIP
        """
        conn = self._resolve(connection)
        with self._gw_lock:
            conn.stalled = True
        if conn._ws is not None:
            conn._ws.gate.pause()
        return conn

    def resume(self, connection: ConnectionRef = None) -> None:
        """Undo :meth:`stall` (for one connection, or all); held and pending frames flow again."""
        with self._gw_lock:
            if connection is None:
                targets = [c for c in self.connections if c.stalled]
            else:
                conn = (
                    connection
                    if isinstance(connection, Connection)
                    else self._conn_by_id[connection]
                )
                targets = [conn]
            for conn in targets:
                conn.stalled = False
                if conn._ws is not None:
                    conn._ws.gate.resume()
                if conn._cond is not None:
                    conn._cond.notify()
            self._flush_pending_locked()

    # -- acks ------------------------------------------------------------------------------
    def _on_client_frame(self, conn: Connection, raw: Union[str, bytes]) -> None:
        at = self.now()
        problems: List[str] = []
        if isinstance(raw, bytes):
            problems.append("frame: sent as a binary frame; acks are text frames")
            raw = raw.decode("utf-8", "replace")
        obj = _decode_json_string(raw)
        if not isinstance(obj, dict):
            with self._gw_lock:
                problems.append("frame: not a JSON object")
                self.violations.extend(f"ack on connection {conn.id}: {p}" for p in problems)
                self._gw_cond.notify_all()
            return
        problems.extend(_ack_problems(obj))
        headers = obj.get("headers")
        mid = headers.get("messageId") if isinstance(headers, dict) else None
        ack = AckFrame(obj)
        ack.connection_id = conn.id
        ack.received_at = at
        self._apply_card_response(mid, obj, problems)
        with self._gw_lock:
            self.acks.append(ack)
            push = self._by_id.get(mid) if isinstance(mid, str) else None
            if isinstance(mid, str) and push is None:
                problems.append(f"headers.messageId: {mid!r} does not match a pushed message")
            if push is not None:
                self._settle_locked(push, ack, problems)
            self.violations.extend(f"ack on connection {conn.id}: {p}" for p in problems)
            self._gw_cond.notify_all()

    def _apply_card_response(self, mid: Any, ack: Mapping[str, Any], problems: List[str]) -> None:
        # Runs before the ack is published, so that once wait_for_ack() returns the card store
        # already shows the update; and outside _gw_lock, because the store has its own lock.
        apply = getattr(self, "_apply_card_callback_response", None)
        with self._gw_lock:
            card = self._card_pushes.get(mid) if isinstance(mid, str) else None
        data = _decode_json_string(ack.get("data"))
        if card is None or ack.get("code") != 200 or not callable(apply):
            return
        if not isinstance(data, dict):
            return
        try:
            apply(card[0], card[1], data.get("response"))
        except Exception as exc:  # a bug in the store must be visible, not kill the reader
            problems.append(f"emulator: applying the card response failed: {exc!r}")

    def _settle_locked(self, push: Push, ack: AckFrame, problems: List[str]) -> None:
        mid = push.message_id
        self._first_ack.setdefault(mid, ack)
        data = _decode_json_string(ack.get("data"))
        code = ack.get("code")
        if push.type == "SYSTEM" and push.topic == "ping":
            expected = self._ping_opaque.get(mid)
            echoed = data.get("opaque") if isinstance(data, dict) else None
            self.pongs.append(Pong(mid, expected, echoed, ack.connection_id, ack.received_at))
            if echoed != expected:
                problems.append(f"data.opaque: ping reply echoed {echoed!r}, expected {expected!r}")
        later = push.type == "EVENT" and isinstance(data, dict) and data.get("status") == "LATER"
        if code == 200 and not later:
            push.acked = True

    # -- waiting ---------------------------------------------------------------------------
    def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 5.0, message: Optional[str] = None
    ) -> None:
        """Block until ``predicate()`` is true (checked on every gateway event); TimeoutError else.

        Example:
            >>> fake.wait_until(lambda: len(fake.open_requests) == 2, timeout=5)  # doctest: +SKIP
        """
        deadline = time.monotonic() + timeout
        with self._gw_cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(message or f"condition not met within {timeout}s")
                # Also poll: a predicate may look at state that changes without a notify.
                self._gw_cond.wait(min(remaining, 0.05))

    def wait_for_connections(self, count: int = 1, timeout: float = 5.0) -> List[Connection]:
        """Wait until ``count`` connections are live and not draining; returns them, oldest first.

        Example:
            >>> conn, = fake.wait_for_connections(1)                # doctest: +SKIP
        """

        def ready() -> List[Connection]:
            return [c for c in self._live if not c.draining and not c._closing]

        self.wait_until(
            lambda: len(ready()) >= count,
            timeout,
            f"fewer than {count} live gateway connection(s) after {timeout}s",
        )
        with self._gw_lock:
            return ready()

    def wait_for_ack(self, message_id: str, timeout: float = 5.0) -> AckFrame:
        """The first ack for ``message_id`` (a dict; ``.connection_id`` tells where it came from).

        Raises:
            TimeoutError: no ack within ``timeout``; the message says where the frame is.

        Example:
            >>> ack = fake.wait_for_ack(fake.push_chatbot("hi"))    # doctest: +SKIP
            >>> ack["code"], ack.connection_id                      # doctest: +SKIP
        """
        try:
            self.wait_until(lambda: message_id in self._first_ack, timeout)
        except TimeoutError:
            raise TimeoutError(self._where(message_id, timeout)) from None
        return self._first_ack[message_id]

    def wait_for_acks(self, message_ids: Iterable[str], timeout: float = 5.0) -> List[AckFrame]:
        """The first ack of each message id, in the given order (one overall timeout)."""
        ids = list(message_ids)
        deadline = time.monotonic() + timeout
        return [self.wait_for_ack(m, max(0.0, deadline - time.monotonic())) for m in ids]

    def _where(self, message_id: str, timeout: float) -> str:
        with self._gw_lock:
            push = self._by_id.get(message_id)
            if push is None:
                return f"no ack for {message_id!r} within {timeout}s: no such message was pushed"
            where = {
                "pending": "it is pending (no live connection subscribed to its topic)",
                "queued": "it is queued on a connection (stalled, or not written yet)",
                "dropped": "it was dropped (its connection closed before it was sent)",
            }.get(push.state, f"it was sent to connection(s) {push.delivered_to}")
            return f"no ack for {message_id!r} within {timeout}s; {where}"

    # -- session webhooks (called by routes/session.py) ------------------------------------
    def _session_state(self, token: Optional[str]) -> Tuple[str, Optional[_Session]]:
        with self._gw_lock:
            session = self._sessions.get(token or "")
            if session is None:
                return "unknown", None
            if self.now_ms() > session.expires_at_ms:
                return "expired", session
            return "ok", session

    def _record_reply(self, session: _Session, body: Mapping[str, Any]) -> Reply:
        reply = Reply(
            session=session.token,
            message_id=session.message_id,
            msg_id=session.msg_id,
            conversation_id=session.conversation_id,
            msgtype=str(body.get("msgtype")),
            body=dict(body),
            at=self.now(),
        )
        with self._gw_lock:
            self.replies.append(reply)
            self._gw_cond.notify_all()
        return reply

    def expire_session(self, session_or_message_id: str) -> None:
        """Expire a session webhook now, by its ``session`` token, messageId or ``msgId``.

        Example:
            >>> fake.expire_session(mid)                            # doctest: +SKIP
        """
        with self._gw_lock:
            session = self._sessions.get(session_or_message_id) or self._session_by_mid.get(
                session_or_message_id
            )
            if session is None:
                session = next(
                    (s for s in self._sessions.values() if s.msg_id == session_or_message_id), None
                )
            if session is None:
                raise KeyError(f"no session webhook for {session_or_message_id!r}")
            session.expires_at_ms = self.now_ms() - 1

    def wait_for_reply(
        self, timeout: float = 5.0, predicate: Optional[Callable[[Reply], bool]] = None
    ) -> Reply:
        """The first recorded session-webhook reply matching ``predicate`` (default: any).

        Example:
            >>> r = fake.wait_for_reply(predicate=lambda r: r.message_id == mid)  # doctest: +SKIP
            >>> r.text                                                             # doctest: +SKIP
        """

        def match() -> Optional[Reply]:
            return next((r for r in self.replies if predicate is None or predicate(r)), None)

        self.wait_until(
            lambda: match() is not None,
            timeout,
            f"no matching session-webhook reply within {timeout}s",
        )
        found = match()
        assert found is not None
        return found
