"""The chat window's event feed: the emulator's records turned into numbered JSON events.

The feed reads the same records tests assert on (``pushes``, ``acks``, ``replies``, ``sent``,
``cards``, ``connections``, ``exchanges`` ...) and emits an event for each new record and for each
change of a mutable one (a card being streamed, a message recalled or read, a connection
closing). Reading the records, rather than hooking every place that writes them, keeps the
gateway and the OpenAPI routes unaware of the window; a poll costs a few list reads, and only
runs while a window is open.

Each event is ``{"seq": n, "kind": k, ...}``; the Server-Sent Events route sends ``seq`` as the
event id, so a browser that reconnects resumes where it stopped.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, Iterable, List, Mapping, Optional, Tuple

if TYPE_CHECKING:
    from ._fake import FakeDingTalk

__all__ = ["Feed", "feed_of", "redact"]

KEEP = 5000  # events kept for windows that open (or reconnect) later
MAX_BODY = 20_000  # characters of one JSON body shown in the inspector
# The control API, the page and its assets are the window talking to itself, not the bot.
_OWN_PATHS = re.compile(r"^/(_emulator/|$|favicon\.ico$)")
_SECRET_KEY = re.compile(r"secret|token|sign|session|ticket|password", re.IGNORECASE)
_feeds_lock = threading.Lock()


def redact(value: Any) -> Any:
    """``value`` with every secret-named key's value replaced by ``"***"``.

    Example:
        >>> redact({"appkey": "k", "appsecret": "s", "n": [{"accessToken": "t"}]})
        {'appkey': 'k', 'appsecret': '***', 'n': [{'accessToken': '***'}]}
    """
    if isinstance(value, Mapping):
        return {
            str(k): "***" if _SECRET_KEY.search(str(k)) else redact(v) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def _body(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    try:
        return redact(json.loads(text)) if text else None
    except ValueError:
        return text[:MAX_BODY]


def _clip(value: Any) -> Any:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return value if len(text) <= MAX_BODY else text[:MAX_BODY] + "…"


def _loads(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None


class Feed:
    """The numbered events of one emulator (see the module docstring)."""

    def __init__(self, fake: FakeDingTalk) -> None:
        self._fake = fake
        self._lock = threading.Lock()
        self._events: Deque[Dict[str, Any]] = deque(maxlen=KEEP)
        self._seq = 0
        self._seen: Dict[str, int] = {}  # list name -> how many of its records were emitted
        self._states: Dict[Tuple[str, str], str] = {}  # (kind, key) -> last emitted state
        self._last: Dict[str, Any] = {}  # bounded record -> the last one emitted
        self._pushed_at: Dict[str, float] = {}

    def since(self, seq: int) -> List[Dict[str, Any]]:
        """The events after ``seq`` (reading the records first)."""
        with self._lock:
            self._poll()
            return [e for e in self._events if e["seq"] > seq]

    # -- reading the records ---------------------------------------------------------------
    def _emit(self, kind: str, **fields: Any) -> None:
        self._seq += 1
        self._events.append({"seq": self._seq, "kind": kind, **fields})

    def _new(self, name: str, records: List[Any]) -> List[Any]:
        """The records appended to the list ``records`` since the last poll (a slice, so a poll
        costs the new records, not the whole history)."""
        start = self._seen.get(name, 0)
        items = records[start:]
        self._seen[name] = start + len(items)
        return items

    def _new_in_window(self, name: str, records: Iterable[Any]) -> List[Any]:
        """Like :meth:`_new` for a bounded deque, whose length stops growing once it is full:
        the new records are those after the last one emitted (found by identity)."""
        items = list(records)
        last = self._last.get(name)
        self._last[name] = items[-1] if items else last
        if last is None:
            return items
        for index in range(len(items) - 1, -1, -1):
            if items[index] is last:
                return items[index + 1 :]
        return items  # everything seen before has been pushed out of the window

    def _changed(self, kind: str, key: str, state: Any) -> bool:
        text = json.dumps(state, sort_keys=True, default=str)
        if self._states.get((kind, key)) == text:
            return False
        self._states[(kind, key)] = text
        return True

    def _poll(self) -> None:
        fake = self._fake
        for conn in list(fake.connections):
            state = {
                "id": conn.id,
                "alive": conn.alive,
                "draining": conn.draining,
                "stalled": conn.stalled,
                "closeCode": conn.close_code,
            }
            if self._changed("connection", conn.id, state):
                self._emit("connection", **state, live=len(fake.live_connections))
        for push in self._new("pushes", fake.pushes):
            self._pushed_at[push.message_id] = push.pushed_at
            frame = _loads(push.text)
            data = _loads(frame.get("data")) if isinstance(frame, dict) else None
            self._emit(
                "push",
                messageId=push.message_id,
                type=push.type,
                topic=push.topic,
                at=push.pushed_at,
                frame=_clip(frame if frame is not None else push.text),
                data=_clip(data),
            )
        for ack in self._new("acks", fake.acks):
            mid = (ack.get("headers") or {}).get("messageId")
            pushed = self._pushed_at.get(mid) if isinstance(mid, str) else None
            latency = None if pushed is None else round((ack.received_at - pushed) * 1000, 1)
            self._emit(
                "ack",
                messageId=mid,
                code=ack.get("code"),
                latencyMs=latency,
                connection=ack.connection_id,
                frame=_clip(dict(ack)),
            )
        for reply in self._new("replies", fake.replies):
            self._emit(
                "reply",
                messageId=reply.message_id,
                conversationId=reply.conversation_id,
                msgtype=reply.msgtype,
                body=_clip(reply.body),
                at=reply.at,
            )
        self._poll_openapi()
        for text in self._new("violations", fake.violations):
            self._emit("violation", text=text)
        for request, response in self._new_in_window("exchanges", fake.exchanges):
            if _OWN_PATHS.match(request.path):
                continue
            self._emit(
                "api",
                host=request.host,
                method=request.method,
                path=request.path,
                query=redact(dict(request.query)),
                request=_clip(_body(request.body)),
                status=response.status,
                response=_clip(_body(response.body)),
                at=request.at,
            )

    def _poll_openapi(self) -> None:
        fake = self._fake
        reads = getattr(fake, "_read", {})
        for index, sent in enumerate(list(fake.sent)):
            state = {
                "index": index,
                "sendKind": sent.kind,  # oto | group | private
                "msgKey": sent.msg_key,
                "msgParam": sent.msg_param,
                "userIds": list(sent.user_ids),
                "openConversationId": sent.open_conversation_id,
                "processQueryKey": sent.process_query_key,
                "recalled": sent.recalled,
                "readBy": sorted(reads.get(sent.process_query_key, {})),
                "at": sent.at,
            }
            if self._changed("sent", str(index), state):
                self._emit("sent", **state)
        for card in list(fake.cards.values()):
            state = {
                "outTrackId": card.out_track_id,
                "templateId": card.template_id,
                "cardData": card.card_data,
                "privateData": card.private_data,
                "spaces": list(card.spaces),
                "streams": card.streams,
                "status": card.status,
            }
            if card.spaces and self._changed("card", card.out_track_id, state):
                self._emit("card", **state)
        for message in self._new("webhook", fake.webhook_messages):
            self._emit("webhook", msgtype=message.msgtype, body=_clip(message.body), at=message.at)
        for notice in self._new("notices", fake.work_notices):
            self._emit(
                "notice",
                taskId=notice.task_id,
                msg=_clip(notice.msg),
                userIds=list(notice.user_ids),
                toAll=notice.to_all,
                at=notice.at,
            )


def feed_of(fake: FakeDingTalk) -> Feed:
    """The feed of ``fake``, made on first use (most emulators never have a window open)."""
    with _feeds_lock:
        feed: Optional[Feed] = getattr(fake, "_chat_feed", None)
        if feed is None:
            feed = Feed(fake)
            fake._chat_feed = feed  # type: ignore[attr-defined]
        return feed
