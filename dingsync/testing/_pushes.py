"""Building and serialising the frames the gateway pushes: chatbot messages, events, card
callbacks and raw frames, one at a time or prepared in bulk (``prepare_chatbot``,
``preserialize``, ``push_many``); and ``push_raw``, which writes arbitrary websocket frames
(binary, invalid UTF-8 ...) for fuzzing a client's frame parser.

Frames are serialised here, by the caller's thread; a frame for a CALLBACK topic carries
``_CONN_PLACEHOLDER`` as its connectionId (``templated``) until the sender knows the connection.
Queuing and routing are ``GatewayMixin._push_prepared``'s job.
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union, cast

from . import payloads
from ._records import _CONN_PLACEHOLDER, ConnectionRef, FrameLike, PreparedFrame
from ._sessions import _Session

__all__ = ["PushMixin"]


def _decode_json_string(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


class PushMixin:
    """The ``push_*`` and ``prepare_*`` methods (part of GatewayMixin)."""

    if TYPE_CHECKING:
        client_id: str
        corp_id: str
        app_id: str
        _gw_lock: threading.RLock
        _card_pushes: Dict[str, Tuple[str, str]]

        def now_ms(self) -> int: ...

        @property
        def oapi_base(self) -> str: ...

        def _add_session(self, session: _Session) -> None: ...

        def _push_prepared(
            self, prepared: List[PreparedFrame], connection: ConnectionRef
        ) -> List[str]: ...

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
        self._add_session(_Session(token, mid, data["msgId"], data["conversationId"], expires))
        return self._prepare_callback(payloads.CHATBOT_TOPIC, data, now_ms, message_id=mid)

    def _prepare_callback(
        self,
        topic: str,
        data: Mapping[str, Any],
        now_ms: int,
        *,
        message_id: Optional[str] = None,
    ) -> PreparedFrame:
        """A templated CALLBACK frame: the sender fills in the connectionId."""
        frame = payloads.frame(
            "CALLBACK",
            topic,
            data,
            message_id=message_id,
            time_ms=now_ms,
            headers={"appId": self.app_id, "connectionId": _CONN_PLACEHOLDER},
        )
        mid = frame["headers"]["messageId"]
        return PreparedFrame(mid, "CALLBACK", topic, payloads.encode_frame(frame), templated=True)

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
        prepared = self._prepare_callback(payloads.CARD_CALLBACK_TOPIC, data, now_ms)
        with self._gw_lock:
            self._card_pushes[prepared.message_id] = (out_track_id, user_id)
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

    def push_raw(
        self,
        data: Union[str, bytes],
        *,
        binary: bool = False,
        connection: ConnectionRef = None,
    ) -> str:
        """Push one websocket frame carrying exactly ``data``; returns its tracking id.

        For fuzzing a client's frame parser: ``data`` need not be JSON, nor a frame, nor even
        UTF-8. A ``str`` is sent UTF-8 encoded; ``bytes`` are sent as they are, in a text frame
        (so invalid UTF-8 can reach the client as text) or, with ``binary=True``, in a binary
        frame. The frame is queued and routed like :meth:`push_frame`'s (in order with the
        other pushes, to a random live connection that is neither draining nor stalled, or to
        ``connection``) and recorded in ``pushes`` (its ``delivered_to`` says where it went);
        it has no type, so it is never redelivered. The tracking id never reaches the wire.

        Example:
            >>> fake.push_raw(b"\\xff\\xfe not utf-8")                    # doctest: +SKIP
            >>> fake.push_raw(b"\\x00\\x01", binary=True)                # doctest: +SKIP
        """
        if not isinstance(data, (str, bytes)):
            raise TypeError(f"push_raw() takes str or bytes, not {type(data).__name__}")
        raw = data.encode("utf-8") if isinstance(data, str) else data
        # The sender writes ``text`` with websockets' send(), which picks the opcode by type:
        # bytes go out in a binary frame, a str in a text frame as ``text.encode()``.
        text: str = cast(str, raw) if binary else _RawText(raw)
        prepared = PreparedFrame("raw-" + payloads.new_message_id(), "", "", text)
        return self._push_prepared([prepared], connection)[0]


class _RawText(str):
    """A text frame's exact payload bytes, UTF-8 or not, for :meth:`PushMixin.push_raw`.

    websockets sends a str as ``send_text(message.encode())``; ``encode()`` here returns the
    original bytes. The str value itself is a readable copy (invalid bytes replaced).
    """

    raw: bytes

    def __new__(cls, raw: bytes) -> _RawText:
        obj = super().__new__(cls, raw.decode("utf-8", "replace"))
        obj.raw = raw
        return obj

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw
