"""FakeDingTalk: the emulator object users start in their tests.

It is assembled from mixins, one per area, so that each area keeps its own state and knobs:
``_HttpCore`` (this module: HTTP servers, clock, tokens, fault injection, request log),
``GatewayMixin`` (``_gateway.py``: the Stream gateway and its websocket), and ``OpenApiMixin``
(``_openapi.py``: robots, cards, webhooks, notifications, media). A mixin may define
``_init_state(self)``, ``_on_start(self)`` and ``_on_stop(self)``; the core calls each of them
once, in MRO order (stop in reverse).
"""

from __future__ import annotations

import secrets
import ssl
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

import attrs

from ..config import Credentials, Endpoints
from . import routes as _routes  # noqa: F401  (registers every route module)
from ._callbacks import HttpDeliveryMixin
from ._gateway import GatewayMixin
from ._http import Request, Response, find_route, json_response, new_error, old_error
from ._openapi import OpenApiMixin

__all__ = ["FakeDingTalk", "Failure"]

TOKEN_LIFETIME = 7200


@attrs.frozen
class Failure:
    """An injected failure for the next request(s) of one route (see ``fail_next``)."""

    status: int = 500
    body: Union[bytes, str, Dict[str, Any], None] = None
    delay: float = 0.0
    reset: bool = False  # close the TCP connection without answering


@attrs.define
class _Token:
    value: str
    expires_at: float


class _HttpCore:
    """HTTP servers, clock, tokens, fault injection and the request log."""

    def __init__(
        self,
        client_id: str = "test-client-id",
        client_secret: str = "test-client-secret",
        *,
        clock: Callable[[], float] = time.time,
        seed: Optional[int] = None,
        ws_tls: Optional[ssl.SSLContext] = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._clock = clock
        self._offset = 0.0
        self._lock = threading.RLock()
        self._servers: Dict[str, ThreadingHTTPServer] = {}
        self._threads: List[threading.Thread] = []
        self._started = False
        self.requests: Deque[Request] = deque(maxlen=100_000)
        # What each request was answered (the chat window's inspector shows both halves).
        self.exchanges: Deque[Tuple[Request, Response]] = deque(maxlen=10_000)
        self._counts: Counter[Tuple[str, str]] = Counter()
        self._failures: Dict[Tuple[str, str], Deque[Optional[Failure]]] = defaultdict(deque)
        self._tokens: Dict[str, _Token] = {}  # "new" / "old" -> current token
        self._revoked: set[str] = set()
        self.seed = seed
        for cls in reversed(type(self).__mro__):
            hook = cls.__dict__.get("_init_state")
            if hook is not None:
                hook(self)
        self.ws_tls = ws_tls

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeDingTalk:
        """Start every server on 127.0.0.1 with ephemeral ports; returns self."""
        if self._started:
            return self  # type: ignore[return-value]
        for host in ("api", "oapi"):
            server = _QuietServer(("127.0.0.1", 0), _make_handler(self, host))
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"fake-dingtalk-{host}",
                daemon=True,
            )
            thread.start()
            self._servers[host] = server
            self._threads.append(thread)
        self._started = True
        for cls in reversed(type(self).__mro__):
            hook = cls.__dict__.get("_on_start")
            if hook is not None:
                hook(self)
        return self  # type: ignore[return-value]

    def stop(self) -> None:
        """Stop every server and close every connection. Idempotent."""
        if not self._started:
            return
        self._started = False
        for cls in type(self).__mro__:
            hook = cls.__dict__.get("_on_stop")
            if hook is not None:
                hook(self)
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> FakeDingTalk:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------
    def _base(self, host: str) -> str:
        if host not in self._servers:
            raise RuntimeError(
                "FakeDingTalk is not started; call start() or use it as a context manager"
            )
        port = self._servers[host].server_address[1]
        return f"http://127.0.0.1:{port}"

    @property
    def api_base(self) -> str:
        """Base URL of the new-style API (stands in for https://api.dingtalk.com)."""
        return self._base("api")

    @property
    def oapi_base(self) -> str:
        """Base URL of the old-style API (stands in for https://oapi.dingtalk.com)."""
        return self._base("oapi")

    @property
    def credentials(self) -> Credentials:
        return Credentials(client_id=self.client_id, client_secret=self.client_secret)

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(api=self.api_base, oapi=self.oapi_base)

    def env(self) -> Dict[str, str]:
        """Environment variables that point dingsync (and the official SDK) at this emulator."""
        return {
            "DINGTALK_CLIENT_ID": self.client_id,
            "DINGTALK_CLIENT_SECRET": self.client_secret,
            "DINGTALK_OPENAPI_ENDPOINT": self.api_base,
            "DINGTALK_OAPI_ENDPOINT": self.oapi_base,
        }

    # -- clock -----------------------------------------------------------------------------
    def now(self) -> float:
        """The emulator's time in epoch seconds (the injected clock plus ``advance()``)."""
        return self._clock() + self._offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward: tokens, tickets and session webhooks expire."""
        with self._lock:
            self._offset += seconds

    # -- fault injection and counters ------------------------------------------------------
    def fail_next(
        self,
        method: str,
        path: str,
        *,
        status: int = 500,
        body: Union[bytes, str, Dict[str, Any], None] = None,
        times: int = 1,
        delay: float = 0.0,
        reset: bool = False,
        after: int = 0,
    ) -> None:
        """Make the next ``times`` requests to ``method path`` fail (after letting ``after`` pass).

        ``body`` may be a dict (sent as JSON), a str (sent as text/html, like DingTalk's IP-ban
        page) or None (a generic error envelope for the route's host). ``delay`` sleeps before
        answering (to provoke client timeouts); ``reset=True`` closes the connection unanswered;
        ``after=N`` lets the next N requests through first (to fail the 2nd chunk of a batch).
        """
        with self._lock:
            queue = self._failures[(method.upper(), path)]
            queue.extend([None] * after)  # None lets one request through untouched
            for _ in range(times):
                queue.append(Failure(status=status, body=body, delay=delay, reset=reset))

    def count(self, method: str, path: str) -> int:
        """How many requests ``method path`` has received (failed ones included)."""
        return self._counts[(method.upper(), path)]

    def requests_to(self, method: str, path: str) -> List[Request]:
        return [r for r in list(self.requests) if r.method == method.upper() and r.path == path]

    # -- tokens ----------------------------------------------------------------------------
    def issue_token(self, kind: str) -> Tuple[str, int]:
        """The current token of ``kind`` ("new" or "old"), renewed as DingTalk does.

        Returns the token and its remaining lifetime in seconds. A call within the lifetime
        returns the same token (with its lifetime extended); an expired one is replaced.
        """
        with self._lock:
            now = self.now()
            token = self._tokens.get(kind)
            if token is None or token.expires_at <= now or token.value in self._revoked:
                token = _Token(value=f"{kind}-{secrets.token_hex(16)}", expires_at=0.0)
                self._tokens[kind] = token
            token.expires_at = now + TOKEN_LIFETIME
            return token.value, TOKEN_LIFETIME

    def expire_tokens(self) -> None:
        """Invalidate every issued token now; the next API call with one gets the auth error."""
        with self._lock:
            for token in self._tokens.values():
                self._revoked.add(token.value)
            self._tokens.clear()

    def token_valid(self, value: Optional[str], kind: str) -> bool:
        with self._lock:
            token = self._tokens.get(kind)
            return (
                value is not None
                and token is not None
                and token.value == value
                and token.expires_at > self.now()
                and value not in self._revoked
            )

    def check_new_auth(self, request: Request) -> Optional[Response]:
        """Auth of the new-style API: only the ``x-acs-dingtalk-access-token`` header counts.

        Returns the error response to send, or None when the token is valid.
        """
        value = request.header("x-acs-dingtalk-access-token")
        if not value:
            return new_error(
                400,
                "AuthenticationFailed.MissingParameter",
                "缺少参数：x-acs-dingtalk-access-token",
            )
        if not self.token_valid(value, "new"):
            return new_error(400, "InvalidAuthentication", "不合法的access_token")
        return None

    def check_old_auth(self, request: Request) -> Optional[Response]:
        """Auth of the old-style API: only ``?access_token=`` counts; errors are HTTP 200."""
        value = request.query.get("access_token")
        topapi = request.path.startswith("/topapi/")
        if not value:
            return old_error(
                88,
                "ding talk error[subcode=40000,submsg=access_token is blank]",
                sub_code="40000",
                sub_msg="access_token is blank",
            )
        if not self.token_valid(value, "old"):
            if topapi:
                return old_error(
                    88,
                    "ding talk error[subcode=40014,submsg=不合法的access_token]",
                    sub_code="40014",
                    sub_msg="不合法的access_token",
                )
            return old_error(40014, "不合法的access_token")
        return None

    # -- dispatch (called by the HTTP handler threads) -------------------------------------
    def _dispatch(self, request: Request) -> Optional[Response]:
        response = self._answer(request)
        if response is not None and response.stream is None:
            self.exchanges.append((request, response))
        return response

    def _answer(self, request: Request) -> Optional[Response]:
        key = (request.method, request.path)
        with self._lock:
            self.requests.append(request)
            self._counts[key] += 1
            queue = self._failures.get(key)
            failure = queue.popleft() if queue else None
        if failure is not None:
            if failure.delay:
                time.sleep(failure.delay)
            if failure.reset:
                return None
            return _failure_response(request.host, failure)
        handler = find_route(request.host, request.method, request.path)
        if handler is None:
            if request.host == "oapi":
                return old_error(22, "无效的ApiName")
            return new_error(
                404, "InvalidAction.NotFound", f"Specified api is not found: {request.path}"
            )
        return handler(self, request)  # type: ignore[arg-type]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 16 handler threads replying at once must not overflow listen()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that resets a keep-alive connection has simply gone away; only real
        # faults in a route deserve the traceback the standard library prints.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def _failure_response(host: str, failure: Failure) -> Response:
    body = failure.body
    if isinstance(body, dict):
        return json_response(body, failure.status)
    if isinstance(body, str):
        return Response(
            failure.status, body.encode("utf-8"), content_type="text/html;charset=utf-8"
        )
    if isinstance(body, bytes):
        return Response(failure.status, body)
    if host == "oapi":
        return old_error(-1, "系统繁忙")
    return new_error(failure.status, "unknownError", "未知错误")


def _make_handler(fake: _HttpCore, host: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "DingTalk/1.0.0"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # the emulator must not print tokens from query strings

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(
                host=host,
                method=self.command,
                path=parts.path,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at=fake.now(),
            )
            try:
                response = fake._dispatch(request)
            except Exception as exc:  # a bug in a route must not hang the client
                response = new_error(500, "emulatorError", f"{type(exc).__name__}: {exc}")
            if response is None:
                self.close_connection = True
                self.connection.close()
                return
            if response.stream is not None:
                self._stream(response)
                return
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        def _stream(self, response: Response) -> None:
            assert response.stream is not None
            self.close_connection = True
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()

            def write(chunk: bytes) -> None:
                self.wfile.write(chunk)
                self.wfile.flush()

            try:
                response.stream(write)
            except (ConnectionError, TimeoutError):
                pass  # the browser went away

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return Handler


class FakeDingTalk(HttpDeliveryMixin, GatewayMixin, OpenApiMixin, _HttpCore):
    """A local DingTalk: Stream gateway, OpenAPI and webhooks on 127.0.0.1.

    ``ws_tls``: a server-side ``ssl.SSLContext`` makes the gateway hand out ``wss://``
    endpoints and speak TLS on them, as DingTalk does (the HTTP APIs stay plain ``http://``);
    point the client at the certificate with ``StreamConfig(ca_bundle=...)``.

    Example:
        >>> from dingsync.testing import FakeDingTalk
        >>> with FakeDingTalk() as fake:
        ...     fake.api_base.startswith("http://127.0.0.1:")
        True
    """
