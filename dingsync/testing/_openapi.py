"""The OpenAPI side of the emulator: state, knobs and recordings of robots, cards, webhooks,
work notifications, media and file downloads.

The routes live in ``routes/robot.py``, ``cards.py``, ``webhook.py``, ``notify.py``, ``media.py``
and ``files.py``; they read and change the state kept here. Everything recorded is a plain
attribute for test assertions:

* ``fake.sent``: robot OpenAPI messages (:class:`SentMessage`), 1:1 and group;
* ``fake.cards`` (also ``fake.card_store``): card instances by ``outTrackId``;
* ``fake.webhook_messages``: what custom group robots accepted;
* ``fake.work_notices``: work notifications; ``fake.media``: uploads by ``media_id``.

Knobs: :meth:`OpenApiMixin.add_webhook_robot`, :meth:`~OpenApiMixin.add_conversation`,
:meth:`~OpenApiMixin.mark_users_invalid`,
:meth:`~OpenApiMixin.mark_users_flow_controlled`, :meth:`~OpenApiMixin.add_file`,
:meth:`~OpenApiMixin.mark_read`, plus the plain attributes ``webhook_rate_limit`` (20),
``webhook_penalty`` (600 s), ``download_url_ttl`` (3600 s) and ``notify_daily_limit`` (500).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Mapping, Optional, Set, Tuple

import attrs

from ._http import BadJson, Request, Response, new_error
from ._records import webhook_text

__all__ = [
    "OpenApiMixin",
    "SentMessage",
    "CardInstance",
    "WebhookRobotState",
    "WebhookMessage",
    "WorkNotice",
    "MediaFile",
    "StoredFile",
]


# DingTalk's open conversation ids: "cid" and base64 (cidAsXSBLnA==, cid6KeBBL5x7EeiodoA==).
_CONVERSATION_ID = re.compile(r"\Acid[0-9A-Za-z+/=_-]+\Z")


@attrs.define
class SentMessage:
    """A message the robot OpenAPI accepted (``batchSend``, group or private-chat send)."""

    kind: str  # "oto" | "group" | "private"
    robot_code: str
    msg_key: str
    msg_param: Dict[str, Any]
    process_query_key: str
    at: float
    user_ids: Tuple[str, ...] = ()
    delivered_to: Tuple[str, ...] = ()
    open_conversation_id: Optional[str] = None
    recalled: bool = False

    @property
    def text(self) -> Optional[str]:
        """The visible text (``content`` of sampleText, ``text`` of the others)."""
        value = self.msg_param.get("content", self.msg_param.get("text"))
        return value if isinstance(value, str) else None


@attrs.define
class CardInstance:
    """One card in the store, keyed by ``out_track_id``."""

    out_track_id: str
    template_id: str
    card_data: Dict[str, str]
    private_data: Dict[str, Dict[str, str]] = attrs.field(factory=dict)
    callback_type: str = "STREAM"
    callback_route_key: Optional[str] = None
    spaces: List[str] = attrs.field(factory=list)  # "IM_GROUP.cid..." once delivered
    streams: Dict[str, str] = attrs.field(factory=dict)  # streamed variable -> current text
    stream_calls: List[Dict[str, Any]] = attrs.field(factory=list)
    updates: List[Dict[str, Any]] = attrs.field(factory=list)
    status: str = "created"  # created | streaming | finished | failed
    guids: Set[str] = attrs.field(factory=set, repr=False)

    @property
    def finalized(self) -> bool:
        return self.status in ("finished", "failed")


@attrs.define
class WebhookRobotState:
    """A registered custom group robot (see :meth:`OpenApiMixin.add_webhook_robot`)."""

    token: str = attrs.field(repr=False)
    secret: Optional[str] = attrs.field(default=None, repr=False)
    keywords: Tuple[str, ...] = ()
    ip_whitelist: Optional[Tuple[str, ...]] = None
    accepted_at: Deque[float] = attrs.field(factory=deque, repr=False)
    penalty_until: float = 0.0
    uuids: Set[str] = attrs.field(factory=set, repr=False)
    throttled: int = 0  # how many sends got 410100


@attrs.frozen
class WebhookMessage:
    """A message a custom group robot accepted."""

    token: str = attrs.field(repr=False)
    msgtype: str
    body: Mapping[str, Any]
    at: float
    msg_uuid: Optional[str] = None

    @property
    def text(self) -> Optional[str]:
        return webhook_text(self.body, self.msgtype)


@attrs.define
class WorkNotice:
    """A work notification task (``asyncsend_v2``) and its outcome (``getsendresult``)."""

    task_id: int
    agent_id: int
    msg: Dict[str, Any]
    user_ids: Tuple[str, ...]
    dept_ids: Tuple[str, ...]
    to_all: bool
    at: float
    delivered_to: Tuple[str, ...] = ()
    result: Dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class MediaFile:
    """An upload (``/media/upload``)."""

    media_id: str
    type: str
    filename: str
    content_type: str
    data: bytes = attrs.field(repr=False)
    created_at: int = 0


@attrs.frozen
class StoredFile:
    """Bytes behind a download code (see :meth:`OpenApiMixin.add_file`)."""

    download_code: str
    data: bytes = attrs.field(repr=False)
    filename: str = "file.bin"
    content_type: str = "application/octet-stream"


def random_key(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(18)


def json_object(request: Request) -> Tuple[Optional[Dict[str, Any]], Optional[Response]]:
    """Decode a new-style JSON body; an error response when it is not a JSON object."""
    try:
        body = request.json()
    except BadJson:
        return None, new_error(400, "invalidParameter.param.invalid", "body is not valid JSON")
    if not isinstance(body, dict):
        return None, new_error(400, "invalidParameter.param.invalid", "body must be a JSON object")
    return body, None


class OpenApiMixin:
    """Robots, cards, custom webhooks, work notifications, media and file downloads."""

    if TYPE_CHECKING:
        client_id: str
        _lock: threading.RLock

        def now(self) -> float: ...

        def now_ms(self) -> int: ...

        @property
        def oapi_base(self) -> str: ...

        @property
        def api_base(self) -> str: ...

    def _init_state(self) -> None:
        self.sent: List[SentMessage] = []
        self.cards: Dict[str, CardInstance] = {}
        self.webhook_robots: Dict[str, WebhookRobotState] = {}
        self.webhook_messages: List[WebhookMessage] = []
        self.webhook_rejections: List[Tuple[int, str]] = []  # (errcode, errmsg)
        self.work_notices: List[WorkNotice] = []
        self.media: Dict[str, MediaFile] = {}
        self.files: Dict[str, StoredFile] = {}
        self.invalid_users: Set[str] = set()
        self.flow_controlled_users: Set[str] = set()
        self.conversations: Set[str] = set()
        self.strict_conversations = False
        self.webhook_rate_limit = 20
        self.webhook_penalty = 600.0
        self.download_url_ttl = 3600.0
        self.notify_daily_limit = 500
        self._read: Dict[str, Dict[str, float]] = {}  # processQueryKey -> user -> read at
        self._blobs: Dict[str, Tuple[str, float]] = {}  # blob id -> (download code, expiry)
        self._next_task = 256271667526

    # -- knobs -----------------------------------------------------------------------------
    @property
    def card_store(self) -> Dict[str, CardInstance]:
        """The card instances by ``outTrackId`` (the same dict as ``fake.cards``)."""
        return self.cards

    def webhook_url(self, token: str) -> str:
        """The custom-robot URL for ``token`` on this emulator."""
        return f"{self.oapi_base}/robot/send?access_token={token}"

    def add_webhook_robot(
        self,
        token: str,
        *,
        secret: Optional[str] = None,
        keywords: Tuple[str, ...] = (),
        ip_whitelist: Optional[Tuple[str, ...]] = None,
    ) -> str:
        """Register a custom group robot; returns its webhook URL.

        ``secret`` turns on signature checking (加签), ``keywords`` keyword security and
        ``ip_whitelist`` the IP check (the client is always 127.0.0.1).

        Example:
            >>> url = fake.add_webhook_robot("tok", secret="SECabc")  # doctest: +SKIP
        """
        with self._lock:
            self.webhook_robots[token] = WebhookRobotState(
                token=token,
                secret=secret,
                keywords=tuple(keywords),
                ip_whitelist=tuple(ip_whitelist) if ip_whitelist is not None else None,
            )
        return self.webhook_url(token)

    def add_conversation(self, *open_conversation_ids: str) -> None:
        """Put the robot in these conversations (groups, or 1:1 chats of a cool app).

        Robot sends to a conversation the emulator does not know get DingTalk's
        ``400 invalid.openConversationId``. Known are: the ones added here, and those of pushed
        chatbot messages; unless ``strict_conversations`` is set, also any well-formed id
        (``cid`` and base64 characters), so that tests need not add every group they use.

        Example:
            >>> fake.add_conversation("cidNightly==")                 # doctest: +SKIP
            >>> fake.strict_conversations = True                      # doctest: +SKIP
        """
        with self._lock:
            self.conversations.update(open_conversation_ids)

    def knows_conversation(self, open_conversation_id: str) -> bool:
        """Whether a robot send to ``open_conversation_id`` is accepted (see
        :meth:`add_conversation`)."""
        with self._lock:
            if open_conversation_id in self.conversations:
                return True
        sessions: Dict[str, Any] = getattr(self, "_sessions", {})
        if any(s.conversation_id == open_conversation_id for s in list(sessions.values())):
            return True
        return not self.strict_conversations and bool(_CONVERSATION_ID.match(open_conversation_id))

    def mark_users_invalid(self, *user_ids: str) -> None:
        """Make these user ids unknown: sends list them in ``invalidStaffIdList``."""
        with self._lock:
            self.invalid_users.update(user_ids)

    def mark_users_flow_controlled(self, *user_ids: str) -> None:
        """Throttle these users: sends list them in ``flowControlledStaffIdList``."""
        with self._lock:
            self.flow_controlled_users.update(user_ids)

    def add_file(
        self,
        download_code: str,
        data: bytes,
        *,
        filename: str = "file.bin",
        content_type: str = "application/octet-stream",
    ) -> None:
        """Make ``download_code`` resolvable by ``messageFiles/download`` to a URL serving ``data``."""
        with self._lock:
            self.files[download_code] = StoredFile(
                download_code=download_code, data=data, filename=filename, content_type=content_type
            )

    def mark_read(self, process_query_key: str, *user_ids: str) -> None:
        """Record that users read a robot message (shown by the read-status routes)."""
        with self._lock:
            reads = self._read.setdefault(process_query_key, {})
            for user in user_ids:
                reads.setdefault(user, self.now())

    def messages_to(self, user_id: str) -> List[SentMessage]:
        """The robot messages delivered to ``user_id`` (1:1)."""
        return [m for m in list(self.sent) if user_id in m.delivered_to]

    def group_messages(self, open_conversation_id: str) -> List[SentMessage]:
        """The robot messages sent to a group."""
        return [m for m in list(self.sent) if m.open_conversation_id == open_conversation_id]

    # -- helpers used by the routes ----------------------------------------------------------
    def _new_blob_url(self, download_code: str) -> str:
        blob = secrets.token_hex(12)
        with self._lock:
            self._blobs[blob] = (download_code, self.now() + self.download_url_ttl)
        name = self.files[download_code].filename
        return f"{self.oapi_base}/_fake/files/{blob}/{name}"

    def _blob(self, blob: str) -> Optional[StoredFile]:
        with self._lock:
            entry = self._blobs.get(blob)
            if entry is None or entry[1] <= self.now():
                return None
            return self.files.get(entry[0])

    def _new_task_id(self) -> int:
        with self._lock:
            self._next_task += 1
            return self._next_task

    def _apply_card_callback_response(self, out_track_id: str, user_id: str, response: Any) -> None:
        """Apply a card-callback handler's answer to the store, as DingTalk does.

        ``response`` is ``{"cardUpdateOptions": {...}, "cardData": {"cardParamMap"},
        "userPrivateData": {"cardParamMap"}}`` (or that as a JSON string). The gateway calls this
        once the callback is acked with code 200.
        """
        if isinstance(response, str):
            try:
                response = json.loads(response)
            except ValueError:
                return
        if not isinstance(response, dict):
            return
        with self._lock:
            card = self.cards.get(out_track_id)
            if card is None:
                return
            options = response.get("cardUpdateOptions") or {}
            public = (response.get("cardData") or {}).get("cardParamMap")
            private = (response.get("userPrivateData") or {}).get("cardParamMap")
            if isinstance(public, dict):
                values = {str(k): str(v) for k, v in public.items()}
                if options.get("updateCardDataByKey"):
                    card.card_data.update(values)
                else:
                    card.card_data = values
            if isinstance(private, dict):
                values = {str(k): str(v) for k, v in private.items()}
                if options.get("updatePrivateDataByKey"):
                    card.private_data.setdefault(user_id, {}).update(values)
                else:
                    card.private_data[user_id] = values
            card.updates.append({"source": "callback", "userId": user_id, "response": response})
