"""CallbackApp: DingTalk's HTTP callbacks as one WSGI application, run by a Router.

One URL serves every kind; the request tells them apart:

- ``?msg_signature=`` (or the older ``?signature=``): an encrypted event subscription;
- ``timestamp`` and ``sign`` headers: a robot message in HTTP receive mode;
- ``?dingsync_card=<secret>``: a card click (see :mod:`dingsync.callbacks.cards`).

Each becomes a :class:`~dingsync.Frame`, as if it had come over the Stream websocket, and runs
through the handler path of :class:`~dingsync.StreamClient` itself (:mod:`dingsync.handling`):
the route's payload decoding, the dedupe store, a :class:`~dingsync.Context` and
``Router.invoke`` with its error hook. The handler's ack becomes the HTTP answer: for events the encrypted
``success`` (or a 500 when the handler failed, so that DingTalk retries), for card clicks the
:class:`~dingsync.CardResponse`, for robot messages the ack's data (replies go out through
``ctx.reply``, as in Stream mode).

A route declared ``ack="receipt"`` is answered first and its handler runs afterwards on a
background thread; :meth:`CallbackApp.close` waits for those threads. On a platform that
freezes the process once the response is sent (Function Compute, Lambda) such a handler may be
frozen half-way: there, answer first and hand slow work to a queue or another invocation.

Anything that is not a genuine callback is answered with a 4xx and a one-line reason, before
any handler runs, and is logged without the request's secrets.

Example:
    >>> import dingsync
    >>> from dingsync.callbacks import CallbackApp
    >>> route = dingsync.Router()
    >>> app = CallbackApp(route, dingsync.Credentials(client_id="id", client_secret="secret"))
    >>> answer = app.handle(CallbackRequest(method="GET"))
    >>> answer.status, answer.body
    (405, b'callbacks are POST requests')
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Mapping, Optional
from urllib.parse import parse_qsl

import attrs

from ..config import Credentials, Endpoints
from ..context import WebhookPoster
from ..dedupe import Deduper, DedupeStore, MemoryDedupeStore
from ..errors import ConfigurationError, ProtocolError
from ..frames import Ack, Frame, FrameType, Headers, Topic, decode_json_object, dumps
from ..handling import Job, Jobs
from ..routing import AckPolicy, RouteKind, Router
from .cards import CardAuth, UrlSecret
from .crypto import CallbackRejected, EventCrypto, verify_robot_sign

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from ..api import ApiClient
    from ..tokens import TokenCache

__all__ = ["CallbackApp", "CallbackRequest", "CallbackAnswer", "MAX_BODY"]

log = logging.getLogger("dingsync.callbacks")

#: The largest request body accepted (413 above it); DingTalk's callbacks are a few KiB.
MAX_BODY = 256 * 1024
#: How long DingTalk waits for an event's answer, in seconds.
EVENT_DEADLINE = 1.5
_JSON = "application/json; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_EVENT_ENVELOPE = ("EventType", "TimeStamp", "CorpId", "EventId")


@attrs.frozen(kw_only=True)
class CallbackRequest:
    """One HTTP request, as the app sees it (header names lower-case, ``-`` kept).

    Example:
        >>> CallbackRequest(method="POST", headers={"sign": "x"}).headers["sign"]
        'x'
    """

    method: str
    query: Mapping[str, str] = attrs.field(factory=dict)
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    body: bytes = attrs.field(default=b"", repr=False)
    content_type: str = ""


@attrs.frozen(kw_only=True)
class CallbackAnswer:
    """The HTTP answer: status, body and content type.

    Example:
        >>> CallbackAnswer(status=200, body=b"{}").content_type
        'application/json; charset=utf-8'
    """

    status: int
    body: bytes = b""
    content_type: str = _JSON

    @property
    def status_line(self) -> str:
        """``"200 OK"``, as WSGI's ``start_response`` wants it."""
        return f"{self.status} {HTTPStatus(self.status).phrase}"


def _rejection(exc: CallbackRejected) -> CallbackAnswer:
    return CallbackAnswer(status=exc.status, body=exc.reason.encode("utf-8"), content_type=_TEXT)


def _failed(ack: Ack) -> CallbackAnswer:
    """A handler failure (code 500, or LATER from an error hook): a 5xx, which DingTalk
    retries; the dedupe store has released the message so that the retry runs it again."""
    status = ack.code if 500 <= ack.code <= 599 else 500
    return CallbackAnswer(status=status, body=ack.message.encode("utf-8"), content_type=_TEXT)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise CallbackRejected(400, "body is not UTF-8") from None


def _json_object(text: str, what: str) -> Dict[str, Any]:
    try:
        return decode_json_object(text, what)
    except ProtocolError:
        raise CallbackRejected(400, f"{what} is not a JSON object") from None


def _digest_id(text: str) -> str:
    # A retry of the same callback has the same body, so it gets the same message id.
    return "http-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:24]


class CallbackApp:
    """A WSGI application that receives DingTalk's HTTP callbacks and runs ``router``.

    Args:
        router: the same :class:`~dingsync.Router` a StreamClient would run.
        credentials: the app's client id and secret (the secret checks robot signatures; the
            id is the default event owner key).
        event_token: the event subscription ``Token`` (events are refused without it).
        event_aes_key: the event subscription's 43-character ``aes_key``.
        event_owner_key: whose events these are; the client id unless given (the corp id for
            the legacy callback registration, the suite key for ISV apps).
        card_secret: the secret in the registered card callback URL (see :meth:`card_url`);
            card clicks are refused without it.
        card_auth: replaces the card-click check (default: :class:`UrlSecret` of
            ``card_secret``).
        dedupe: the dedupe store (default in memory); share a RedisDedupeStore between the
            instances of a function.
        api: the ApiClient handed to handlers as ``ctx.api``; by default one on the same
            credentials and ``endpoints`` (nothing connects until a handler uses it).
        endpoints: API base URLs (default: ``Endpoints.from_env()``).
        token_cache: where the default ApiClient keeps its access token; in a serverless
            function a ``FileTokenCache`` in ``/tmp`` or a ``RedisTokenCache``, since module
            globals do not survive reliably between invocations.
        max_body: the largest body accepted, in bytes (413 above).
        robot_tolerance: how far a robot message's timestamp may be from now, in seconds.
        receipt_threads: threads that run ``ack="receipt"`` handlers after the answer.
        clock: Unix time in seconds (injectable for tests).

    Example:
        >>> app = CallbackApp(route, dingsync.Credentials.from_env(),  # doctest: +SKIP
        ...     event_token=os.environ["DINGTALK_EVENT_TOKEN"],
        ...     event_aes_key=os.environ["DINGTALK_EVENT_AES_KEY"])
        >>> waitress.serve(app, listen="0.0.0.0:8080")  # doctest: +SKIP
    """

    def __init__(
        self,
        router: Router,
        credentials: Credentials,
        *,
        event_token: Optional[str] = None,
        event_aes_key: Optional[str] = None,
        event_owner_key: Optional[str] = None,
        card_secret: Optional[str] = None,
        card_auth: Optional[CardAuth] = None,
        dedupe: Optional[DedupeStore] = None,
        api: Optional[ApiClient] = None,
        endpoints: Optional[Endpoints] = None,
        token_cache: Optional[TokenCache] = None,
        max_body: int = MAX_BODY,
        robot_tolerance: float = 3600.0,
        receipt_threads: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(router, Router):
            raise ConfigurationError(
                f"CallbackApp needs a dingsync.Router, not {type(router).__name__}"
            )
        if (event_token is None) != (event_aes_key is None):
            raise ConfigurationError(
                "event callbacks need both event_token and event_aes_key "
                "(DINGTALK_EVENT_TOKEN and DINGTALK_EVENT_AES_KEY)"
            )
        if max_body <= 0 or robot_tolerance <= 0 or receipt_threads <= 0:
            raise ConfigurationError("max_body, robot_tolerance and receipt_threads must be > 0")
        self.router = router
        self.credentials = credentials
        self.crypto: Optional[EventCrypto] = (
            EventCrypto(event_token, event_aes_key, event_owner_key or credentials.client_id)
            if event_token is not None and event_aes_key is not None
            else None
        )
        self.card_auth: Optional[CardAuth] = card_auth or (
            UrlSecret(card_secret) if card_secret is not None else None
        )
        self.dedupe: DedupeStore = dedupe if dedupe is not None else MemoryDedupeStore()
        self._api: Any = (
            api if api is not None else _ApiOnFirstUse(credentials, endpoints, token_cache)
        )
        self.max_body = max_body
        self.robot_tolerance = robot_tolerance
        self._clock = clock
        self._jobs = Jobs(
            router,
            Deduper(self.dedupe),
            client_id=credentials.client_id,
            api=self._api,
            poster=WebhookPoster(),
            send_ack=_Answer.put,
            count=self._count,
            skip=lambda: False,
        )
        self._receipt_threads = receipt_threads
        self._executor: Optional[ThreadPoolExecutor] = None
        self._lock = threading.Condition()
        self._closing = False
        self._busy = 0  # requests being handled plus receipt handlers not finished
        self._counters: Dict[str, int] = dict.fromkeys(
            ("requests", "rejected", "handled", "handler_errors", "duplicates"), 0
        )

    def __repr__(self) -> str:
        kinds = ["robot"] + ["events"] * (self.crypto is not None)
        kinds += ["cards"] * (self.card_auth is not None)
        return f"CallbackApp(client_id={self.credentials.client_id!r}, kinds={kinds})"

    # -- WSGI ----------------------------------------------------------------------------
    def __call__(
        self, environ: Mapping[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """The WSGI entry point (PEP 3333); the app answers on any path it is mounted at."""
        answer = self.handle_environ(environ)
        start_response(
            answer.status_line,
            [("Content-Type", answer.content_type), ("Content-Length", str(len(answer.body)))],
        )
        return [answer.body]

    def handle_environ(self, environ: Mapping[str, Any]) -> CallbackAnswer:
        """Read a WSGI environ (the body up to ``max_body``) and :meth:`handle` it."""
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0:
            return self._count_rejected(CallbackRejected(400, "Content-Length is not a number"))
        if length > self.max_body:
            return self._count_rejected(self._too_large())
        body = b""
        stream = environ.get("wsgi.input")
        if method == "POST" and stream is not None:
            # Without a Content-Length (chunked), one byte past the limit tells "too large".
            body = stream.read(length) if length else stream.read(self.max_body + 1)
        headers = {
            key[5:].lower().replace("_", "-"): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        query = dict(parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True))
        return self.handle(
            CallbackRequest(
                method=method,
                query=query,
                headers=headers,
                body=body,
                content_type=str(environ.get("CONTENT_TYPE", "")),
            )
        )

    # -- requests ------------------------------------------------------------------------
    def handle(self, request: CallbackRequest) -> CallbackAnswer:
        """Answer one request; never raises (a bug in the app is a logged 500).

        Example:
            >>> import dingsync
            >>> app = CallbackApp(dingsync.Router(), dingsync.Credentials(client_id="i",
            ...     client_secret="s"))
            >>> app.handle(CallbackRequest(method="POST", content_type="application/json",
            ...     body=b"{}")).body
            b'not a DingTalk callback: no robot sign, event msg_signature or card secret'
        """
        with self._lock:
            self._counters["requests"] += 1
            if self._closing:
                return CallbackAnswer(
                    status=503, body=b"shutting down; retry on another instance", content_type=_TEXT
                )
            self._busy += 1
        try:
            return self._answer(request)
        except CallbackRejected as exc:
            return self._count_rejected(exc)
        except Exception:
            log.exception("internal error while answering a callback")
            return CallbackAnswer(status=500, body=b"internal error", content_type=_TEXT)
        finally:
            self._done()

    def _answer(self, request: CallbackRequest) -> CallbackAnswer:
        if request.method != "POST":
            raise CallbackRejected(405, "callbacks are POST requests")
        if len(request.body) > self.max_body:
            raise self._too_large()
        media = request.content_type.split(";", 1)[0].strip().lower()
        if media != "application/json":
            raise CallbackRejected(415, "callbacks are application/json")
        query, headers = request.query, request.headers
        if "msg_signature" in query or "signature" in query:
            return self._event(request)
        if "sign" in headers or "timestamp" in headers:
            return self._robot(request)
        if self.card_auth is not None and self.card_auth.claims(query, headers):
            self.card_auth.verify(query, headers)
            return self._card(request)
        raise CallbackRejected(
            401, "not a DingTalk callback: no robot sign, event msg_signature or card secret"
        )

    def _too_large(self) -> CallbackRejected:
        return CallbackRejected(413, f"body larger than {self.max_body} bytes")

    def _count_rejected(self, exc: CallbackRejected) -> CallbackAnswer:
        with self._lock:
            self._counters["rejected"] += 1
        log.warning("callback refused with %d: %s", exc.status, exc.reason)
        return _rejection(exc)

    def _robot(self, request: CallbackRequest) -> CallbackAnswer:
        timestamp = request.headers.get("timestamp")
        verify_robot_sign(
            timestamp,
            request.headers.get("sign"),
            self.credentials.client_secret,
            now_ms=int(self._clock() * 1000),
            tolerance=self.robot_tolerance,
        )
        text = _text(request.body)
        msg_id = _json_object(text, "body").get("msgId")
        if not isinstance(msg_id, str) or not msg_id:
            raise CallbackRejected(400, "robot message has no msgId")
        headers = Headers(message_id=f"http-{msg_id}", topic=Topic.CHATBOT, time=timestamp)
        ack = self._dispatch(Frame(type=FrameType.CALLBACK, headers=headers, data=text))
        if ack.code != 200:
            return _failed(ack)
        return CallbackAnswer(status=200, body=ack.data.encode("utf-8"))

    def _card(self, request: CallbackRequest) -> CallbackAnswer:
        text = _text(request.body)
        _json_object(text, "body")
        headers = Headers(message_id=_digest_id(text), topic=Topic.CARD_CALLBACK)
        ack = self._dispatch(Frame(type=FrameType.CALLBACK, headers=headers, data=text))
        if ack.code != 200:
            return _failed(ack)
        response = decode_json_object(ack.data, "ack").get("response")
        return CallbackAnswer(status=200, body=dumps(response or {}).encode("utf-8"))

    def _event(self, request: CallbackRequest) -> CallbackAnswer:
        crypto = self.crypto
        if crypto is None:
            raise CallbackRejected(
                403, "event callbacks are not configured (no event token and aes_key)"
            )
        query = request.query
        signature = query.get("msg_signature") or query.get("signature")
        timestamp = query.get("timestamp") or query.get("timeStamp")
        nonce = query.get("nonce")
        if not signature or not timestamp or not nonce:
            raise CallbackRejected(400, "event without msg_signature, timestamp and nonce")
        encrypt = _json_object(_text(request.body), "body").get("encrypt")
        if not isinstance(encrypt, str) or not encrypt:
            raise CallbackRejected(400, "event body has no encrypt")
        crypto.verify(signature, timestamp, nonce, encrypt)
        plain = crypto.decrypt(encrypt)
        event = _json_object(plain, "event")
        event_type = event.get("EventType")
        if not isinstance(event_type, str) or not event_type:
            raise CallbackRejected(400, "event has no EventType")
        if event_type != "check_url":  # the console's URL check only wants the answer
            ack = self._dispatch(_event_frame(event, plain), missing_ok=True)
            data = decode_json_object(ack.data, "ack")
            if ack.code != 200 or data.get("status") == "LATER":
                return _failed(ack)  # no encrypted success: DingTalk delivers it again
        answer = crypto.answer(timestamp=str(int(self._clock() * 1000)))
        return CallbackAnswer(status=200, body=dumps(answer).encode("utf-8"))

    # -- dispatch: the StreamClient's handler path (dingsync.handling), on this thread ------
    def _dispatch(self, frame: Frame, *, missing_ok: bool = False) -> Ack:
        route = self.router.route_for(frame)
        if route is None:
            if missing_ok:  # an event nobody handles is acknowledged, never retried forever
                return Ack.ok(frame.message_id, {"status": "SUCCESS", "message": "success"})
            raise CallbackRejected(404, self.router.not_found(frame).message)
        if route.ack == AckPolicy.RECEIPT:
            try:
                route.decode(frame)  # a malformed payload is refused, not answered
            except ProtocolError as exc:
                raise CallbackRejected(400, f"malformed payload: {exc.field or 'data'}") from None
            self._run_later((frame, route, _Answer()))
            return route.receipt_ack(frame.message_id)
        answer = _Answer()
        started = self._clock()
        self._jobs.run((frame, route, answer))
        took = self._clock() - started
        if route.kind == RouteKind.EVENT and took > EVENT_DEADLINE:
            log.warning(
                "event handler %s took %.1f s; DingTalk waits %.1f s for the answer and "
                "then delivers the event again: declare it ack='receipt' or hand work on",
                route.name,
                took,
                EVENT_DEADLINE,
            )
        if answer.ack is None:  # a copy runs here or on another instance: its answer counts
            raise CallbackRejected(409, "this callback is being handled already; retry later")
        if answer.ack.code == 400:
            raise CallbackRejected(400, answer.ack.message)
        self._count("handled")
        return answer.ack

    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[_COUNTERS.get(name, name)] += 1

    def _run_later(self, job: Job) -> None:
        with self._lock:
            if self._executor is None:
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(
                    self._receipt_threads, thread_name_prefix="dingsync-receipt"
                )
            self._busy += 1
        self._executor.submit(self._receipt_job, job)

    def _receipt_job(self, job: Job) -> None:
        try:
            self._jobs.run(job)
            self._count("handled")
        finally:
            self._done()

    def _done(self) -> None:
        with self._lock:
            self._busy -= 1
            self._lock.notify_all()

    # -- lifecycle and introspection -----------------------------------------------------
    def close(self, timeout: float = 30.0) -> bool:
        """Refuse new requests (503) and wait up to ``timeout`` s for running ones and for
        ``ack="receipt"`` handlers; True when all finished.

        Example:
            >>> import dingsync
            >>> app = CallbackApp(dingsync.Router(), dingsync.Credentials(client_id="i",
            ...     client_secret="s"))
            >>> app.close(timeout=5)
            True
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closing = True
            while self._busy > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)
        return True

    @property
    def in_flight(self) -> int:
        """Requests being answered plus receipt handlers still running."""
        with self._lock:
            return self._busy

    @property
    def api(self) -> ApiClient:
        """The ApiClient handlers get as ``ctx.api`` (the default one is made here, on first
        use)."""
        api = self._api
        return api.get() if isinstance(api, _ApiOnFirstUse) else api  # type: ignore[no-any-return]

    def stats(self) -> Dict[str, int]:
        """Counters since start: requests, rejected, handled, handler_errors, duplicates,
        and ``in_flight``.

        Example:
            >>> import dingsync
            >>> app = CallbackApp(dingsync.Router(), dingsync.Credentials(client_id="i",
            ...     client_secret="s"))
            >>> sorted(app.stats())
            ['duplicates', 'handled', 'handler_errors', 'in_flight', 'rejected', 'requests']
        """
        with self._lock:
            return {**self._counters, "in_flight": self._busy}

    def card_url(self, base: str) -> str:
        """The URL to register for card clicks: ``base`` plus the card secret.

        Raises:
            ConfigurationError: no ``card_secret`` was given (or ``card_auth`` is not a
                :class:`UrlSecret`).

        Example:
            >>> app.card_url("https://fc.example.com/")  # doctest: +SKIP
            'https://fc.example.com/?dingsync_card=...'
        """
        if not isinstance(self.card_auth, UrlSecret):
            raise ConfigurationError("card_url() needs CallbackApp(card_secret=...)")
        return self.card_auth.url(base)


def _event_frame(event: Mapping[str, Any], plain: str) -> Frame:
    """The EVENT frame the Stream gateway would push for ``event`` (the decrypted JSON): the
    envelope fields become headers, the rest is ``data``."""
    event_id = event.get("EventId")
    born = event.get("TimeStamp")
    born_text = str(born) if isinstance(born, (str, int)) and not isinstance(born, bool) else None
    corp = event.get("CorpId")
    headers = Headers(
        message_id=f"http-{event_id}"
        if isinstance(event_id, str) and event_id
        else _digest_id(plain),
        topic=Topic.ALL_EVENTS,
        event_type=str(event["EventType"]),
        event_id=event_id if isinstance(event_id, str) else None,
        event_corp_id=corp if isinstance(corp, str) else None,
        event_born_time=born_text if born_text and born_text.isdigit() else None,
    )
    data = {k: v for k, v in event.items() if k not in _EVENT_ENVELOPE}
    return Frame(type=FrameType.EVENT, headers=headers, data=dumps(data))


class _Answer:
    """Where the handler path hands a request's ack (a stream connection's place)."""

    __slots__ = ("ack",)

    def __init__(self) -> None:
        self.ack: Optional[Ack] = None

    def put(self, ack: Ack) -> None:
        if self.ack is None:  # a waiter's late copy is not this request's answer
            self.ack = ack


#: The handler path's counter names -> this app's.
_COUNTERS = {"redeliveries_skipped": "duplicates"}


class _ApiOnFirstUse:
    """Stands in for ``ctx.api`` until a handler touches it, then is the ApiClient.

    Importing requests is about a third of a cold start, and a function that only answers
    events may never call the OpenAPI; DingTalk wants the first answer within 1500 ms.
    """

    def __init__(
        self,
        credentials: Credentials,
        endpoints: Optional[Endpoints],
        token_cache: Optional[TokenCache],
    ) -> None:
        self._args = (credentials, endpoints, token_cache)
        self._client: Optional[ApiClient] = None
        self._lock = threading.Lock()

    def get(self) -> ApiClient:
        with self._lock:
            if self._client is None:
                from ..api import ApiClient

                credentials, endpoints, cache = self._args
                self._client = ApiClient(
                    credentials,
                    endpoints=endpoints if endpoints is not None else Endpoints.from_env(),
                    token_cache=cache,
                )
            return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)

    def __repr__(self) -> str:
        return f"<ApiClient for {self._args[0].client_id!r}, made on first use>"
