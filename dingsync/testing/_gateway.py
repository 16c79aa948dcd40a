"""The Stream gateway side of the emulator: tickets, websocket connections, pushes, acks, SYSTEM
frames, redelivery and session webhooks.

Threads, per running emulator: one accept loop (``websockets.sync.server``), one timer thread
(redelivery and delayed closes), and per connection the library's reader thread (which reads
acks), its handler thread and one sender thread of ours. Pushes are serialised once, by the caller,
and queued on the chosen connection's outbox; the sender thread writes them. Every piece of shared
state is guarded by ``_gw_lock``; ``_gw_cond`` (on the same lock) wakes the ``wait_*`` helpers.

``GatewayMixin`` (here: state, routing, SYSTEM frames, acks and waits) is assembled from parts:
``_wsconn.py`` (tickets, the websocket server, sender threads, stall/drop/resume),
``_pushes.py`` (building the frames), ``_sessions.py`` (session webhooks) and
``_redelivery.py`` (redelivery and the timer thread); the records are in ``_records.py``.

Example:
    >>> from dingsync.testing import FakeDingTalk
    >>> with FakeDingTalk() as fake:
    ...     mid = fake.push_chatbot("hello")   # no client yet: kept pending
    ...     [p.message_id for p in fake.pending] == [mid]
    True
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from functools import partial
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)

from . import payloads
from ._pushes import PushMixin, _decode_json_string
from ._records import (
    AckFrame,
    Connection,
    ConnectionRef,
    Pong,
    PreparedFrame,
    Push,
)
from ._redelivery import RedeliveryMixin
from ._sessions import SessionWebhookMixin
from ._wsconn import WsConnectionsMixin

__all__ = ["GatewayMixin"]


def _ack_problems(obj: Mapping[str, Any], data: Any) -> List[str]:
    """Strict ack shape (protocol.md §3.1); each problem starts with the field it names.
    ``data`` is ``obj["data"]`` decoded (None when it is not valid JSON)."""
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
    elif obj["data"] and data is None and obj["data"] != "null":
        # "" is tolerated: the Go SDK sends the handler's raw (often empty) bytes.
        problems.append("data: not valid JSON")
    return problems


class GatewayMixin(WsConnectionsMixin, PushMixin, SessionWebhookMixin, RedeliveryMixin):
    """Stream gateway: tickets, websocket connections, pushes, acks, SYSTEM frames, redelivery.

    Knobs are plain attributes, read when they matter, so they can change mid-test:
    ``ticket_ttl`` (90 s, emulator clock), ``redeliver_events_after`` /
    ``redeliver_callbacks_after`` (seconds of real time before an un-acked frame is pushed again;
    None = never, the default), ``keepalive_interval`` / ``keepalive_timeout`` (server-initiated
    websocket pings for connections opened afterwards; off by default), ``close_timeout``.
    """

    if TYPE_CHECKING:
        seed: Optional[int]

        def now(self) -> float: ...

        def now_ms(self) -> int: ...

    # -- state -----------------------------------------------------------------------------
    # The parts define no hooks of their own: the order below (lock first, timer before the
    # server, server stopped before the timer) is spelled out here rather than left to the MRO.
    def _init_state(self) -> None:
        self._gw_lock = threading.RLock()
        self._gw_cond = threading.Condition(self._gw_lock)
        self._rng = random.Random(self.seed)
        self.app_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        self.corp_id = "dingtestcorp"
        self.pushes: List[Push] = []
        self.acks: List[AckFrame] = []
        self.violations: List[str] = []
        self.pongs: List[Pong] = []
        self._by_id: Dict[str, Push] = {}
        self._first_ack: Dict[str, AckFrame] = {}
        self._ping_opaque: Dict[str, str] = {}
        self._pending: List[Push] = []
        self._card_pushes: Dict[str, Tuple[str, str]] = {}  # messageId -> (outTrackId, userId)
        self._init_connections()
        self._init_sessions()
        self._init_redelivery()

    def _on_start(self) -> None:
        self._start_timer()
        self._start_ws_server()

    def _on_stop(self) -> None:
        self._stop_ws_server()
        self._stop_timer()

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

    # -- SYSTEM frames (stall/drop/resume are in _wsconn.py) -------------------------------
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
        prepared = self._prepare_system("ping", payloads.ping_data(opaque))
        with self._gw_lock:
            self._ping_opaque[prepared.message_id] = opaque
        return self._push_prepared([prepared], conn)[0]

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
        prepared = self._prepare_system("disconnect", payloads.disconnect_data(reason))
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
        self._call_later(close_after, partial(self._close_later, conn))
        return push.message_id

    def _prepare_system(self, topic: str, data: Mapping[str, Any]) -> PreparedFrame:
        frame = payloads.frame("SYSTEM", topic, data, time_ms=self.now_ms())
        return self._prepare_raw(frame)

    # -- acks ------------------------------------------------------------------------------
    def _on_client_frame(self, conn: Connection, raw: Union[str, bytes]) -> None:
        at = self.now()
        problems: List[str] = []
        if isinstance(raw, bytes):
            problems.append("frame: sent as a binary frame; acks are text frames")
            raw = raw.decode("utf-8", "replace")
        obj = _decode_json_string(raw)
        if not isinstance(obj, dict):
            problems.append("frame: not a JSON object")
            with self._gw_lock:
                self._report_locked(conn, problems)
            return
        data = _decode_json_string(obj.get("data"))  # once: three checks below read it
        problems.extend(_ack_problems(obj, data))
        headers = obj.get("headers")
        mid = headers.get("messageId") if isinstance(headers, dict) else None
        ack = AckFrame(obj)
        ack.connection_id = conn.id
        ack.received_at = at
        self._apply_card_response(mid, obj, data, problems)
        with self._gw_lock:
            self.acks.append(ack)
            push = self._by_id.get(mid) if isinstance(mid, str) else None
            if isinstance(mid, str) and push is None:
                problems.append(f"headers.messageId: {mid!r} does not match a pushed message")
            if push is not None:
                self._settle_locked(push, ack, data, problems)
            self._report_locked(conn, problems)

    def _report_locked(self, conn: Connection, problems: List[str]) -> None:
        """Record an ack's problems as violations and wake the waiters (the ack arrived)."""
        self.violations.extend(f"ack on connection {conn.id}: {p}" for p in problems)
        self._gw_cond.notify_all()

    def _apply_card_response(
        self, mid: Any, ack: Mapping[str, Any], data: Any, problems: List[str]
    ) -> None:
        # Runs before the ack is published, so that once wait_for_ack() returns the card store
        # already shows the update; and outside _gw_lock, because the store has its own lock.
        if not self._card_pushes:  # no card callback pushed: nothing to apply (the usual case)
            return
        apply = getattr(self, "_apply_card_callback_response", None)
        with self._gw_lock:
            card = self._card_pushes.get(mid) if isinstance(mid, str) else None
        if card is None or ack.get("code") != 200 or not callable(apply):
            return
        if not isinstance(data, dict):
            return
        try:
            apply(card[0], card[1], data.get("response"))
        except Exception as exc:  # a bug in the store must be visible, not kill the reader
            problems.append(f"emulator: applying the card response failed: {exc!r}")

    def _settle_locked(self, push: Push, ack: AckFrame, data: Any, problems: List[str]) -> None:
        mid = push.message_id
        self._first_ack.setdefault(mid, ack)
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
