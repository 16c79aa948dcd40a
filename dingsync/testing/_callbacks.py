"""HTTP delivery: the emulator POSTs robot messages, events and card clicks to a callback URL,
signed and encrypted as DingTalk does (reference/http-callbacks.md), instead of pushing them
over the Stream websocket.

- ``fake.register_callback_url(url)``: robot messages (HTTP receive mode) and event
  subscriptions go to ``url``. Events are encrypted with ``fake.event_token`` /
  ``fake.event_aes_key`` (made up at start, like the console does) for the owner key
  ``fake.client_id``.
- ``POST /v1.0/card/callbacks/register`` (``api.cards.register_callback``): clicks on cards
  created with ``callbackType: "HTTP"`` and that route key go to its URL.

``push_chatbot``/``push_event``/``push_card_callback`` then return at once; sender threads
POST and check each answer (``fake.http_deliveries``, ``fake.wait_for_delivery``): a robot
message wants a 2xx; an event wants, within ``event_answer_timeout`` (1.5 s), the encrypted
``success`` signed with the token; a card click wants a JSON card update, which is applied to
the card store. A wrong answer is recorded in ``fake.violations``. A delivery that was not
answered as wanted is retried after ``redeliver_events_after`` / ``redeliver_callbacks_after``
seconds when those knobs are set (recorded in ``fake.redeliveries``); ``http_delay`` holds
each POST back that many seconds.

The hook into the gateway is one override: ``_push_prepared`` takes out the frames that go
over HTTP and hands the rest to the websocket side.
"""

from __future__ import annotations

import base64
import http.client
import json
import queue
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlencode, urlsplit

import attrs

from ..callbacks.crypto import CallbackRejected, EventCrypto, robot_sign
from . import payloads
from ._http import Request, Response, json_response, new_error, route
from ._openapi import json_object
from ._records import ConnectionRef, PreparedFrame, Redelivery

if TYPE_CHECKING:
    from ._fake import FakeDingTalk
    from ._openapi import CardInstance

__all__ = ["HttpDeliveryMixin", "HttpDelivery"]

_SENDERS = 8
_JSON = "application/json; charset=utf-8"


@attrs.define(eq=False)
class HttpDelivery:
    """One callback POSTed to the app (``fake.http_deliveries``).

    ``kind`` is ``chatbot``, ``event`` or ``card``; ``payload`` the JSON as sent before
    encryption (an event's plaintext); ``state`` ``queued``, ``answered`` (the answer was
    right), ``failed`` (it was not; ``problem`` says why) or ``retrying``. ``status``,
    ``answer`` and ``latency`` (seconds) describe the last attempt; ``queued_at`` and
    ``finished_at`` are ``time.monotonic()`` readings (when it was pushed, when its last
    attempt ended), for measuring.
    """

    message_id: str
    kind: str
    url: str = attrs.field(repr=False)
    payload: Dict[str, Any] = attrs.field(repr=False)
    state: str = "queued"
    attempts: int = 0
    status: Optional[int] = None
    answer: bytes = attrs.field(default=b"", repr=False)
    latency: Optional[float] = None
    problem: Optional[str] = None
    queued_at: float = attrs.field(factory=time.monotonic, repr=False)
    finished_at: Optional[float] = attrs.field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.state == "answered"

    @property
    def final(self) -> bool:
        return self.state in ("answered", "failed")


@attrs.frozen
class _CardRoute:
    url: str = attrs.field(repr=False)
    api_secret: str = attrs.field(repr=False)


def _new_aes_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")


def _with_query(url: str, params: Mapping[str, str]) -> str:
    return f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(params)}"


class HttpDeliveryMixin:
    """``register_callback_url``, the card route-key registry and the HTTP senders."""

    if TYPE_CHECKING:
        client_id: str
        client_secret: str
        cards: Dict[str, CardInstance]
        violations: List[str]
        redeliveries: List[Redelivery]
        redeliver_events_after: Optional[float]
        redeliver_callbacks_after: Optional[float]
        _gw_lock: threading.RLock
        _gw_cond: threading.Condition

        def now(self) -> float: ...

        def now_ms(self) -> int: ...

        def _call_later(self, delay: float, fn: Any) -> None: ...

        def _apply_card_callback_response(
            self, out_track_id: str, user_id: str, response: Any
        ) -> None: ...

        def wait_until(
            self, predicate: Any, timeout: float = 5.0, message: Optional[str] = None
        ) -> None: ...

    def _init_state(self) -> None:
        self.event_token = "token-" + secrets.token_hex(8)
        self.event_aes_key = _new_aes_key()
        self.event_legacy_query = False  # True: ?signature=&timeStamp= (the older spelling)
        self.http_timeout = 5.0
        self.event_answer_timeout = 1.5
        self.http_delay = 0.0
        self.http_deliveries: List[HttpDelivery] = []
        self._callback_url: Optional[str] = None
        self._callback_kinds: Tuple[str, ...] = ()
        self._card_routes: Dict[str, _CardRoute] = {}
        self._http_queue: queue.Queue[Optional[HttpDelivery]] = queue.Queue()
        self._http_threads: List[threading.Thread] = []
        self._deliveries_by_id: Dict[str, HttpDelivery] = {}

    def _on_start(self) -> None:
        for n in range(_SENDERS):
            thread = threading.Thread(
                target=self._http_sender, name=f"fake-dingtalk-http-{n}", daemon=True
            )
            thread.start()
            self._http_threads.append(thread)

    def _on_stop(self) -> None:
        for _ in self._http_threads:
            self._http_queue.put(None)
        for thread in self._http_threads:
            thread.join(timeout=5)
        self._http_threads.clear()

    # -- registration --------------------------------------------------------------------
    def register_callback_url(
        self, url: Optional[str], *, chatbot: bool = True, events: bool = True
    ) -> None:
        """Deliver robot messages and/or events by HTTP POST to ``url`` (None: back to the
        websocket), as the console's "HTTP" receive mode and event subscription URL do.

        Example:
            >>> fake.register_callback_url("http://127.0.0.1:8080/")  # doctest: +SKIP
            >>> fake.wait_for_delivery(fake.push_chatbot("hi")).status  # doctest: +SKIP
            200
        """
        kinds = ("chatbot",) * chatbot + ("event",) * events
        with self._gw_lock:
            self._callback_url = url
            self._callback_kinds = kinds if url else ()

    @property
    def event_crypto(self) -> EventCrypto:
        """The app's event encryption, as the console configured it."""
        return EventCrypto(self.event_token, self.event_aes_key, self.client_id)

    def register_card_callback(self, route_key: str, url: str, api_secret: str) -> None:
        """What ``POST /v1.0/card/callbacks/register`` does: clicks on cards created with
        ``callbackType: "HTTP"`` and ``callbackRouteKey=route_key`` are POSTed to ``url``."""
        with self._gw_lock:
            self._card_routes[route_key] = _CardRoute(url, api_secret)

    def card_callback_url(self, route_key: str) -> Optional[str]:
        """The URL registered for ``route_key``, or None."""
        with self._gw_lock:
            entry = self._card_routes.get(route_key)
            return entry.url if entry is not None else None

    # -- the hook: divert what goes over HTTP --------------------------------------------
    def _push_prepared(self, prepared: List[PreparedFrame], connection: ConnectionRef) -> List[str]:
        if not self._callback_kinds and not self._card_routes:
            return super()._push_prepared(prepared, connection)  # type: ignore[misc, no-any-return]
        rest = []
        for p in prepared:
            delivery = self._http_delivery_for(p)
            if delivery is None:
                rest.append(p)
            else:
                self._enqueue_http(delivery)
        if rest:
            super()._push_prepared(rest, connection)  # type: ignore[misc]
        return [p.message_id for p in prepared]

    def _http_delivery_for(self, p: PreparedFrame) -> Optional[HttpDelivery]:
        if p.topic == payloads.CHATBOT_TOPIC and "chatbot" in self._callback_kinds:
            kind = "chatbot"
        elif p.type == "EVENT" and "event" in self._callback_kinds:
            kind = "event"
        elif p.topic == payloads.CARD_CALLBACK_TOPIC and self._card_routes:
            kind = "card"
        else:
            return None
        try:
            frame = json.loads(p.text)
            data = json.loads(frame.get("data") or "{}")
        except (ValueError, AttributeError, TypeError):
            return None  # a hand-made frame that is not a callback: the websocket gets it
        if not isinstance(data, dict):
            return None
        url = self._callback_url
        if kind == "event":
            headers = frame.get("headers", {})
            envelope = {
                "EventType": headers.get("eventType"),
                "EventId": headers.get("eventId"),
                "TimeStamp": headers.get("eventBornTime"),
                "CorpId": headers.get("eventCorpId"),
            }
            data = {**{k: v for k, v in envelope.items() if v is not None}, **data}
        elif kind == "card":
            card = self.cards.get(str(data.get("outTrackId")))
            key = card.callback_route_key if card is not None else None
            if card is None or card.callback_type != "HTTP" or key is None:
                return None
            url = self.card_callback_url(key)
        if url is None:
            return None
        return HttpDelivery(p.message_id, kind, url, data)

    def _enqueue_http(self, delivery: HttpDelivery) -> None:
        with self._gw_lock:
            self.http_deliveries.append(delivery)
            self._deliveries_by_id[delivery.message_id] = delivery
        self._http_queue.put(delivery)

    # -- sending -------------------------------------------------------------------------
    def _http_sender(self) -> None:
        conns: Dict[Tuple[str, int], http.client.HTTPConnection] = {}
        while True:
            delivery = self._http_queue.get()
            if delivery is None:
                break
            if self.http_delay:
                time.sleep(self.http_delay)
            self._attempt(delivery, conns)
        for conn in conns.values():
            conn.close()

    def _request(self, delivery: HttpDelivery) -> Tuple[str, Dict[str, str], bytes]:
        """The URL, headers and body of one attempt (signed now, as DingTalk signs each)."""
        headers = {"Content-Type": _JSON}
        now_ms = str(self.now_ms())
        if delivery.kind == "event":
            crypto = self.event_crypto
            encrypt = crypto.encrypt(payloads.encode_frame(delivery.payload))
            nonce = secrets.token_hex(4)
            names = (
                ("signature", "timeStamp")
                if self.event_legacy_query
                else ("msg_signature", "timestamp")
            )
            params = {
                names[0]: crypto.signature(now_ms, nonce, encrypt),
                names[1]: now_ms,
                "nonce": nonce,
            }
            body = json.dumps({"encrypt": encrypt}).encode("utf-8")
            return _with_query(delivery.url, params), headers, body
        if delivery.kind == "chatbot":
            headers["timestamp"] = now_ms
            headers["sign"] = robot_sign(now_ms, self.client_secret)
        return delivery.url, headers, payloads.encode_frame(delivery.payload).encode("utf-8")

    def _attempt(
        self, delivery: HttpDelivery, conns: Dict[Tuple[str, int], http.client.HTTPConnection]
    ) -> None:
        url, headers, body = self._request(delivery)
        parts = urlsplit(url)
        address = (parts.hostname or "127.0.0.1", parts.port or 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        started = time.perf_counter()
        status: Optional[int] = None
        answer = b""
        problem: Optional[str] = None
        try:
            conn = conns.get(address)
            if conn is None:
                conn = conns[address] = http.client.HTTPConnection(
                    *address, timeout=self.http_timeout
                )
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            status, answer = response.status, response.read()
            if response.will_close:
                conns.pop(address).close()
        except (OSError, http.client.HTTPException) as exc:
            stale = conns.pop(address, None)
            if stale is not None:
                stale.close()
            problem = f"no answer ({type(exc).__name__})"
        latency = time.perf_counter() - started
        if problem is None:
            problem = self._check_answer(delivery, status, answer, latency)
        self._settle_http(delivery, status, answer, latency, problem)

    def _check_answer(
        self, delivery: HttpDelivery, status: Optional[int], answer: bytes, latency: float
    ) -> Optional[str]:
        """Why the answer is not what DingTalk wants (None when it is); a malformed 2xx is
        also recorded as a violation."""
        if status is None or not 200 <= status < 300:
            return f"answered HTTP {status}"
        wrong: Optional[str] = None
        if delivery.kind == "event":
            if latency > self.event_answer_timeout:
                wrong = f"answered after {latency * 1000:.0f} ms (DingTalk waits 1500 ms)"
            else:
                wrong = self._event_answer_problem(answer)
        elif delivery.kind == "card":
            try:
                response = json.loads(answer.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                wrong = "card callback answer is not JSON"
            else:
                self._apply_card_callback_response(
                    str(delivery.payload.get("outTrackId")),
                    str(delivery.payload.get("userId")),
                    response,
                )
        if wrong is not None:
            with self._gw_lock:
                self.violations.append(f"http {delivery.kind} {delivery.message_id}: {wrong}")
        return wrong

    def _event_answer_problem(self, answer: bytes) -> Optional[str]:
        try:
            obj = json.loads(answer.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return "event answer is not JSON"
        if not isinstance(obj, dict):
            return "event answer is not a JSON object"
        fields = [obj.get(k) for k in ("msg_signature", "timeStamp", "nonce", "encrypt")]
        signature, timestamp, nonce, encrypt = (f if isinstance(f, str) else "" for f in fields)
        if not (signature and timestamp and nonce and encrypt):
            return "event answer lacks msg_signature, timeStamp, nonce or encrypt"
        crypto = self.event_crypto
        try:
            crypto.verify(signature, timestamp, nonce, encrypt)
            plain = crypto.decrypt(encrypt)
        except CallbackRejected as exc:
            return f"event answer: {exc.reason}"
        if plain != "success":
            return f"event answer decrypts to {plain[:40]!r}, not 'success'"
        return None

    def _settle_http(
        self,
        delivery: HttpDelivery,
        status: Optional[int],
        answer: bytes,
        latency: float,
        problem: Optional[str],
    ) -> None:
        after = self.redeliver_events_after if delivery.kind == "event" else None
        if delivery.kind != "event":
            after = self.redeliver_callbacks_after
        with self._gw_cond:
            delivery.attempts += 1
            delivery.status, delivery.answer, delivery.latency = status, answer, latency
            delivery.problem = problem
            delivery.finished_at = time.monotonic()
            if problem is None:
                delivery.state = "answered"
            elif after is not None:
                delivery.state = "retrying"
                self._call_later(after, lambda: self._retry_http(delivery))
            else:
                delivery.state = "failed"
            self._gw_cond.notify_all()

    def _retry_http(self, delivery: HttpDelivery) -> None:
        with self._gw_lock:
            self.redeliveries.append(
                Redelivery(delivery.message_id, delivery.attempts + 1, self.now(), ())
            )
        self._http_queue.put(delivery)

    # -- waiting -------------------------------------------------------------------------
    def wait_for_delivery(self, message_id: str, timeout: float = 5.0) -> HttpDelivery:
        """The HTTP delivery of ``message_id`` once it is answered right or has failed for
        good (a retry pending is waited for).

        Raises:
            TimeoutError: neither within ``timeout``; the message says what happened.

        Example:
            >>> fake.wait_for_delivery(fake.push_event("user_add_org", {})).ok  # doctest: +SKIP
            True
        """
        try:
            self.wait_until(
                lambda: (d := self._deliveries_by_id.get(message_id)) is not None and d.final,
                timeout,
            )
        except TimeoutError:
            with self._gw_lock:
                found = self._deliveries_by_id.get(message_id)
            what = (
                "it was never sent over HTTP (no callback URL for its kind?)"
                if found is None
                else f"it is {found.state} after {found.attempts} attempt(s): {found.problem}"
            )
            raise TimeoutError(
                f"no final HTTP answer for {message_id!r} in {timeout}s; {what}"
            ) from None
        return self._deliveries_by_id[message_id]


@route("api", "POST", "/v1.0/card/callbacks/register")
def register_card_callback(fake: FakeDingTalk, request: Request) -> Response:
    """Register a card callback URL under a route key (reference/http-callbacks.md §3)."""
    error = fake.check_new_auth(request)
    if error is not None:
        return error
    body, error = json_object(request)
    if error is not None or body is None:
        return error or new_error(400, "invalidParameter.param.invalid", "body is not JSON")
    key, url, secret = (body.get(k) for k in ("callbackRouteKey", "callbackUrl", "apiSecret"))
    for name, value in (("callbackRouteKey", key), ("callbackUrl", url), ("apiSecret", secret)):
        if not isinstance(value, str) or not value:
            return new_error(400, "invalidParameter.param.invalid", f"{name} is empty")
    assert isinstance(key, str) and isinstance(url, str) and isinstance(secret, str)
    if urlsplit(url).scheme not in ("http", "https"):
        return new_error(400, "invalidParameter.param.invalid", "callbackUrl must be http(s)")
    existing = fake.card_callback_url(key)
    if existing is not None and existing != url and not body.get("forceUpdate"):
        return new_error(
            400,
            "invalidParameter.callbackRouteKey.exists",
            f"callbackRouteKey {key} is registered already; set forceUpdate to replace it",
        )
    fake.register_card_callback(key, url, secret)
    return json_response({"success": True, "result": {"callbackRouteKey": key}})
