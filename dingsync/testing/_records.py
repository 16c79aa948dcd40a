"""The gateway's records: what tests assert on (``fake.connections``, ``fake.pushes``,
``fake.acks``, ``fake.pongs``, ``fake.redeliveries``, ``fake.replies``, ...).

Plain attrs classes with no behaviour beyond reading their own fields; the mutable ones
(:class:`Connection`, :class:`Push`) are only changed under the gateway's ``_gw_lock``.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Mapping, Optional, Tuple, Union

import attrs

if TYPE_CHECKING:
    from ._wsconn import _WsConnection

__all__ = [
    "AckFrame",
    "Connection",
    "ConnectionRef",
    "FrameLike",
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
# connection is chosen; the sender swaps it for the real id (one str.replace per frame). Frames
# that contain it are ``templated``.
_CONN_PLACEHOLDER = "conn-" + secrets.token_hex(12)


def webhook_text(body: Mapping[str, Any], msgtype: str) -> Optional[str]:
    """The visible text of a webhook-style body (``{"msgtype": t, t: {"content"|"text": ...}}``)."""
    part = body.get(msgtype)
    if isinstance(part, dict):
        value = part.get("content", part.get("text"))
        return value if isinstance(value, str) else None
    return None


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
        return webhook_text(self.body, self.msgtype)


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
