"""The gateway's websocket plumbing: tickets and the handshake, the websockets server and its
handler, one sender thread per connection, and the connection faults (stall, drop, delayed close).

Per connection there are the library's reader thread, which hands each whole ack straight to
``_on_client_frame`` (``_WsConnection.process_event``), its handler thread (``_ws_handler``: the
connection's lifetime, and the rare fragmented message) and one sender thread of ours
(``_sender_loop``), which writes the connection's outbox up to 64 frames per system call.
What goes into an outbox is decided by the routing in ``_gateway.py``; all shared state is
guarded by the gateway's ``_gw_lock``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import ssl
import threading
import time
import uuid
import weakref
from functools import partial
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ClassVar,
    Dict,
    List,
    Optional,
    Tuple,
    Union,
    cast,
)
from urllib.parse import parse_qs, urlsplit

import attrs
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse
from websockets.protocol import State
from websockets.sync.server import Server, ServerConnection, serve

from .._redact import redact_logger
from ._records import _CONN_PLACEHOLDER, Connection, ConnectionRef, OpenRequest, Push, PushStats

__all__ = ["WsConnectionsMixin"]

_WRITE_AT_ONCE = 64  # frames per socket write in a burst (about 64 KiB of chatbot frames)

# websockets logs only on bugs (handler crashes); the emulator must stay silent otherwise.
_WS_LOGGER = logging.getLogger("dingsync.testing.gateway")
_WS_LOGGER.addHandler(logging.NullHandler())
# websockets logs each handshake's request line at DEBUG, and that line carries the ticket.
redact_logger(_WS_LOGGER.name)


@attrs.define(eq=False)
class _Ticket:
    value: str = attrs.field(repr=False)
    request: OpenRequest
    issued_at: float
    used: bool = False


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
    owner: ClassVar[Optional[WsConnectionsMixin]] = None
    # Set once the gateway has registered the connection: from then on a whole (unfragmented)
    # message is handled on the thread that reads the socket. websockets would queue it for the
    # handler thread, and that hop (a lock, a queue and a thread wake-up per ack) cost the
    # emulator more than the ack's own checks.
    on_message: Optional[Callable[[Union[str, bytes]], None]] = None
    _fragmented = False  # a fragmented message is being queued: later frames follow it

    # websockets >= 16 passes the Server as a third positional argument; 15 (the newest on
    # Python 3.9) does not, so positional arguments are passed through as they come.
    def __init__(self, sock: socket.socket, protocol: Any, *args: Any, **kwargs: Any) -> None:
        self.gate = _GatedSocket(sock)
        self.ticket: Optional[_Ticket] = None
        owner = self.owner
        if owner is not None:
            # Read per connection, so the keepalive knob is live.
            kwargs["ping_interval"] = owner.keepalive_interval
            kwargs["ping_timeout"] = owner.keepalive_timeout
            kwargs["close_timeout"] = owner.close_timeout
            owner._ws_all.add(self)
        super().__init__(cast(socket.socket, self.gate), protocol, *args, **kwargs)

    def process_event(self, event: Any) -> None:
        on_message = self.on_message
        if on_message is not None and isinstance(event, WsFrame):
            opcode = event.opcode
            if (opcode is Opcode.TEXT or opcode is Opcode.BINARY) and not self._fragmented:
                if event.fin:
                    message = _message_of(opcode, bytes(event.data))
                    if message is not None:
                        try:
                            on_message(message)
                        except Exception:  # a bug here must show, not kill the socket's reader
                            _WS_LOGGER.exception("emulator: handling a client frame failed")
                        return
                    # Invalid UTF-8: queued as before, ws.recv() raises it to the handler.
                else:
                    self._fragmented = True
            elif opcode is Opcode.CONT and event.fin:
                self._fragmented = False
        super().process_event(event)

    def send_texts(self, texts: List[str]) -> None:
        """Send each of ``texts`` as its own message, all in one write (see :meth:`send_data`).

        A str is sent as a text frame of ``text.encode()`` and bytes as a binary frame, as
        ``send()`` does, so ``push_raw``'s payloads go out unchanged.
        """
        protocol = self.protocol
        with self.send_context():
            for text in texts:
                if isinstance(text, str):
                    protocol.send_text(text.encode())
                else:
                    protocol.send_binary(text)

    def send_data(self) -> None:
        """websockets' ``send_data`` with one ``sendall`` for all pending frames, where it
        makes one per frame: a burst of pushes costs one system call, not thousands, so the
        emulator keeps up with the clients it measures. Requires ``protocol_mutex``."""
        pending: List[bytes] = []
        for data in self.protocol.data_to_send():
            if data:
                pending.append(data)
                continue
            self._sendall(pending)  # b"" = half-close after what came before it
            pending = []
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:  # socket already closed
                pass
        self._sendall(pending)

    def _sendall(self, chunks: List[bytes]) -> None:
        if not chunks:
            return
        if self.close_deadline is not None:
            self.socket.settimeout(self.close_deadline.timeout())
        self.socket.sendall(chunks[0] if len(chunks) == 1 else b"".join(chunks))


def _writable(conn: Connection, pushes: List[Push]) -> List[str]:
    """The wire texts of ``pushes`` up to the first one ``conn`` may not get now (it stalled or
    is closing, or is draining and the push is not a SYSTEM frame or addressed to it)."""
    texts: List[str] = []
    for push in pushes:
        if (
            conn.stalled
            or conn._closing
            or (conn.draining and push.type != "SYSTEM" and push.target is not conn)
        ):
            break
        texts.append(push.text.replace(_CONN_PLACEHOLDER, conn.id) if push.templated else push.text)
    return texts


def _message_of(opcode: Opcode, data: bytes) -> Union[str, bytes, None]:
    """A text frame's str (None when it is not UTF-8), a binary frame's bytes."""
    if opcode is not Opcode.TEXT:
        return data
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


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


class WsConnectionsMixin:
    """Tickets, the websocket server, live connections and their faults (part of GatewayMixin).

    Knobs (plain attributes, read when they matter): ``ticket_ttl`` (90 s, emulator clock),
    ``keepalive_interval`` / ``keepalive_timeout`` (server-initiated websocket pings for
    connections opened afterwards; off by default) and ``close_timeout``.
    """

    if TYPE_CHECKING:
        _gw_lock: threading.RLock
        _gw_cond: threading.Condition
        ws_tls: Optional[ssl.SSLContext]

        def now(self) -> float: ...

        def _route_locked(self, push: Push) -> None: ...

        def _flush_pending_locked(self) -> None: ...

        def _on_client_frame(self, conn: Connection, raw: Union[str, bytes]) -> None: ...

        def _schedule_redelivery_locked(self, push: Push) -> None: ...

    # -- state -----------------------------------------------------------------------------
    def _init_connections(self) -> None:
        """Called by ``GatewayMixin._init_state`` once ``_gw_lock`` exists."""
        self.ticket_ttl = 90.0
        self.keepalive_interval: Optional[float] = None
        self.keepalive_timeout: Optional[float] = 20.0
        self.close_timeout = 1.0
        self.open_requests: List[OpenRequest] = []
        self.connections: List[Connection] = []
        self.handshake_rejections: List[Tuple[int, str]] = []
        self._live: List[Connection] = []
        self._conn_by_id: Dict[str, Connection] = {}
        self._tickets: Dict[str, _Ticket] = {}
        self._ws_all: weakref.WeakSet[_WsConnection] = weakref.WeakSet()
        self._ws_server: Optional[Server] = None
        self._ws_thread: Optional[threading.Thread] = None
        self._gw_stopping = False
        self._sender_seq = itertools.count(1)
        self.reset_push_stats()

    def _start_ws_server(self) -> None:
        fake = self

        class _Bound(_WsConnection):
            owner = fake

        self._gw_stopping = False
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
            ssl=self.ws_tls,
        )
        self._ws_server = server
        self._ws_thread = threading.Thread(
            target=server.serve_forever, name="dingsync-fake-gateway", daemon=True
        )
        self._ws_thread.start()

    def _stop_ws_server(self) -> None:
        with self._gw_lock:
            self._gw_stopping = True
            for conn in self._live:
                conn.stalled = False
            self._gw_cond.notify_all()
        for ws in list(self._ws_all):
            _hard_close(ws, 1001, "")
        if self._ws_server is not None:
            try:
                # Every connection was hard-closed above; don't wait on closing handshakes.
                self._ws_server.shutdown(close_connections=False)
            except TypeError:  # websockets < 16 (the newest on Python 3.9) lacks the option
                self._ws_server.shutdown()
        if self._ws_thread is not None:
            self._ws_thread.join(timeout=1.0)
        if self._ws_server is not None and not (self._ws_thread and self._ws_thread.is_alive()):
            _close_shutdown_pipe(self._ws_server)
        self._ws_server = self._ws_thread = None

    @property
    def ws_endpoint(self) -> str:
        """The ``endpoint`` handed out with tickets: ``ws://127.0.0.1:<port>/connect``
        (``wss://`` when the emulator was made with ``ws_tls``)."""
        if self._ws_server is None:
            raise RuntimeError(
                "FakeDingTalk is not started; call start() or use it as a context manager"
            )
        port = self._ws_server.socket.getsockname()[1]
        scheme = "wss" if self.ws_tls is not None else "ws"
        return f"{scheme}://127.0.0.1:{port}/connect"

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
            # _stat_started is set by the first push (GatewayMixin._submit).
            self._stat_started: Optional[float] = None
            self._stat_last: Optional[float] = None

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
        wsc.on_message = partial(self._on_client_frame, conn)
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
        while sent < len(batch):
            # Up to _WRITE_AT_ONCE frames per write; a failed write sends its frames elsewhere
            # (a client may then see one twice, as after a real redelivery, never zero times).
            texts = _writable(conn, batch[sent : sent + _WRITE_AT_ONCE])
            if not texts:
                break
            try:
                ws.send_texts(texts)
            except (ConnectionClosed, OSError, RuntimeError):
                broken = True
                break
            sent += len(texts)
            if len(texts) < _WRITE_AT_ONCE:
                break  # a stall, close or drain stopped it, or the batch is done
        cpu = time.thread_time() - cpu0
        finished = time.perf_counter()
        with self._gw_lock:
            for push in batch[:sent]:
                push.state = "sent"
                push.delivered_to.append(cid)
                self._schedule_redelivery_locked(push)
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

    # -- picking a connection --------------------------------------------------------------
    def _lookup_locked(self, connection: Union[Connection, str]) -> Connection:
        conn = (
            connection if isinstance(connection, Connection) else self._conn_by_id.get(connection)
        )
        if conn is None:
            raise KeyError(f"unknown connection {connection!r}")
        return conn

    def _resolve(self, connection: ConnectionRef) -> Connection:
        """The open connection ``connection`` names; None = the newest, preferring non-draining."""
        with self._gw_lock:
            if connection is None:
                live = [c for c in self._live if not c._closing]
                if not live:
                    raise RuntimeError(
                        "no live connection to the fake gateway (see wait_for_connections())"
                    )
                fresh = [c for c in live if not c.draining]
                return (fresh or live)[-1]
            conn = self._lookup_locked(connection)
            if conn._closing:
                raise RuntimeError(f"connection {conn.id} is closed")
            return conn

    # -- faults ----------------------------------------------------------------------------
    def _close_later(self, conn: Connection) -> None:
        """Timer callback of ``disconnect()``: have the sender close the websocket (code 1000)."""
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
                targets = [self._lookup_locked(connection)]
            for conn in targets:
                conn.stalled = False
                if conn._ws is not None:
                    conn._ws.gate.resume()
                if conn._cond is not None:
                    conn._cond.notify()
            self._flush_pending_locked()


def _close_shutdown_pipe(server: Server) -> None:
    # websockets < 16 (the newest on Python 3.9) never closes its server's shutdown pipe: two
    # descriptors per emulator, which a long test session runs out of. Later versions close
    # their socket pair themselves (the attributes are sockets there, and closed already).
    for end in (
        getattr(server, "shutdown_watcher", None),
        getattr(server, "shutdown_notifier", None),
    ):
        if isinstance(end, int):
            try:
                os.close(end)
            except OSError:
                pass
