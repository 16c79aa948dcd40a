"""One gateway session: the ticket (HTTP), then the websocket (websocket-client).

This module is the boundary where requests and websocket-client exceptions become dingsync
errors: :class:`~dingsync.errors.AuthError` (401), :class:`~dingsync.errors.GatewayOpenError`,
:class:`~dingsync.errors.TransportError` and :class:`~dingsync.errors.ConnectionClosed`.

The ticket is a credential (it opens one connection within 90 s), so it is never logged and
never left in an error message.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import ssl
import threading
import time
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    Union,
)
from urllib.parse import quote_plus, unquote, urlsplit

import attrs
import websocket

from .._version import __version__
from ..config import Credentials, Endpoints, StreamConfig
from ..errors import (
    AuthError,
    ConnectionClosed,
    GatewayOpenError,
    RequestTimeout,
    TransportError,
)
from .wsread import fast_reader_for, fast_writer_for

_HOLD_AT_MOST = 64  # held acks beyond this are written at once (about 10 KiB)

__all__ = [
    "Ticket",
    "Connection",
    "Connector",
    "GATEWAY_OPEN_PATH",
    "open_ticket",
    "connect",
    "proxy_for",
    "websocket_options",
    "local_ip",
    "origin_stamp",
    "open_connection",
    "message_id_of",
]

log = logging.getLogger("dingsync.stream")

GATEWAY_OPEN_PATH = "/v1.0/gateway/connections/open"

#: Opens a websocket; same signature as ``websocket.create_connection(url, **options)``.
Connector = Callable[..., Any]

_PROXY_KEYS = {
    True: ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"),
    False: ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"),
}


@attrs.frozen
class Ticket:
    """The answer of ``/v1.0/gateway/connections/open``: where to connect, and the one-time
    ticket (valid 90 s, one connection), kept out of ``repr()``.

    Example:
        >>> Ticket("wss://gw:443/connect", "t-1")
        Ticket(endpoint='wss://gw:443/connect')
    """

    endpoint: str
    ticket: str = attrs.field(repr=False)

    @property
    def url(self) -> str:
        """The websocket URL, ticket included: never log it.

        Example:
            >>> Ticket("wss://gw:443/connect", "t 1").url
            'wss://gw:443/connect?ticket=t+1'
        """
        separator = "&" if "?" in self.endpoint else "?"
        return f"{self.endpoint}{separator}ticket={quote_plus(self.ticket)}"


def _scrub(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(quote_plus(secret), "***")
    return text


def local_ip(host: str, port: int = 443) -> str:
    """The address this machine uses to reach ``host`` (no packet is sent), for ``localIp``.

    Example:
        >>> local_ip("127.0.0.1")
        '127.0.0.1'
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port))
            return str(probe.getsockname()[0])
    except (OSError, UnicodeError):
        return "127.0.0.1"


def origin_stamp(api: str) -> str:
    """``localIp`` for the gateway: this machine's address, hostname and pid.

    Example:
        >>> origin_stamp("http://127.0.0.1:8080").startswith("127.0.0.1,")
        True
    """
    # localIp is free text for DingTalk's diagnosis; hostname and pid tell which of several
    # processes holds a connection (ghost connections swallow pushes, user-pain P7).
    parts = urlsplit(api)
    ip = local_ip(parts.hostname or "127.0.0.1", parts.port or 443)
    return f"{ip},{socket.gethostname()},pid={os.getpid()}"


def open_ticket(
    session: Any,
    *,
    credentials: Credentials,
    endpoints: Endpoints,
    subscriptions: Sequence[Mapping[str, str]],
    config: StreamConfig,
    origin: Optional[str] = None,
) -> Ticket:
    """Register a connection ticket: ``POST {api}/v1.0/gateway/connections/open``.

    Example:
        >>> ticket = open_ticket(requests.Session(), credentials=creds,  # doctest: +SKIP
        ...     endpoints=Endpoints(), subscriptions=route.subscriptions(), config=StreamConfig())

    Raises:
        AuthError: HTTP 401, DingTalk refused the client id / secret.
        GatewayOpenError: any other refusal, or an answer without endpoint and ticket.
        TransportError: the network failed (RequestTimeout on a timeout).
    """
    import requests

    url = endpoints.api + GATEWAY_OPEN_PATH
    body = {
        "clientId": credentials.client_id,
        "clientSecret": credentials.client_secret,
        "subscriptions": [dict(s) for s in subscriptions],
        "ua": f"{config.user_agent}/{__version__}",
        "localIp": origin if origin is not None else origin_stamp(endpoints.api),
    }
    proxies = {"http": config.proxy, "https": config.proxy} if config.proxy else None
    try:
        resp = session.post(
            url,
            json=body,
            headers={
                "Accept": "application/json",
                "User-Agent": f"{config.user_agent}/{__version__} python-requests",
            },
            timeout=config.open_timeout,
            proxies=proxies,
            verify=config.ca_bundle or True,
        )
    except requests.Timeout as exc:
        raise RequestTimeout(
            f"the gateway did not answer within {config.open_timeout}s", maybe_sent=True
        ) from exc
    except requests.exceptions.SSLError as exc:
        raise TransportError(
            f"TLS verification of {endpoints.api} failed ({exc}); set StreamConfig(ca_bundle=...) "
            "behind an intercepting proxy"
        ) from exc
    except requests.RequestException as exc:
        raise TransportError(f"cannot reach the gateway at {endpoints.api}: {exc}") from exc
    try:
        answer = resp.json()
    except ValueError:
        answer = None
    info = answer if isinstance(answer, dict) else {}
    code = str(info.get("code") or "") or None
    detail = str(info.get("message") or "")
    if resp.status_code == 401:
        raise AuthError(
            f"DingTalk refused client id {credentials.client_id!r} (HTTP 401 {code}: {detail}); "
            "check DINGTALK_CLIENT_ID and DINGTALK_CLIENT_SECRET",
            status=401,
            code=code,
            request_id=str(info.get("requestid") or "") or None,
        )
    if resp.status_code != 200:
        raise GatewayOpenError(
            f"the gateway answered HTTP {resp.status_code} {code or ''}: {detail}".rstrip(": "),
            status=resp.status_code,
            code=code,
        )
    endpoint, ticket = info.get("endpoint"), info.get("ticket")
    if not isinstance(endpoint, str) or not endpoint or not isinstance(ticket, str) or not ticket:
        raise GatewayOpenError(
            "the gateway's answer has no endpoint or ticket", status=resp.status_code
        )
    return Ticket(endpoint=endpoint, ticket=ticket)


def _bypassed(host: str, environ: Mapping[str, str]) -> bool:
    raw = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    entries = [e.strip().lower() for e in raw.split(",") if e.strip()]
    host = host.lower().strip("[]")
    try:
        address: Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in entries:
        if entry == "*":
            return True
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.strip("[]") if entry.startswith("[") else entry.rsplit(":", 1)[0]
        name = name.lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def proxy_for(
    url: str, *, proxy: Optional[str] = None, environ: Optional[Mapping[str, str]] = None
) -> Optional[str]:
    """The HTTP proxy for ``url``: ``proxy`` if given, else ``HTTPS_PROXY`` (``HTTP_PROXY`` for
    plain ``ws://``) or ``ALL_PROXY`` unless ``NO_PROXY`` excludes the host, like requests.

    Example:
        >>> proxy_for("wss://gw.example.com/connect", environ={"HTTPS_PROXY": "http://p:3128"})
        'http://p:3128'
        >>> proxy_for("wss://gw.example.com/connect",
        ...           environ={"HTTPS_PROXY": "http://p:3128", "NO_PROXY": ".example.com"})
    """
    if proxy:
        return proxy
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    if not parts.hostname or _bypassed(parts.hostname, env):
        return None
    for key in _PROXY_KEYS[parts.scheme in ("wss", "https")]:
        value = env.get(key)
        scheme = value.split("://", 1)[0].lower() if value and "://" in value else "http"
        if value and scheme in ("http", "https"):
            return value  # socks:// proxies are left out: requests cannot use them either
    return None


def _ca_bundle(config: StreamConfig, environ: Mapping[str, str]) -> Optional[str]:
    # The same bundle requests verifies the gateway call with, so both legs trust the same CAs.
    explicit = (
        config.ca_bundle or environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE")
    )
    if explicit:
        return explicit
    try:
        import certifi
    except ImportError:  # pragma: no cover - requests depends on certifi
        return None
    return str(certifi.where())


def websocket_options(
    url: str, config: StreamConfig, *, environ: Optional[Mapping[str, str]] = None
) -> Dict[str, Any]:
    """Keyword arguments for ``websocket.create_connection(url, **options)``.

    Proxy: ``config.proxy``, else the environment (``HTTPS_PROXY``/``NO_PROXY``), passed as
    ``http_proxy_host/port/auth``; when no proxy applies, ``http_no_proxy=["*"]`` stops
    websocket-client from guessing on its own. TLS is always verified.

    Example:
        >>> opts = websocket_options("wss://gw.example.com/connect", StreamConfig(),
        ...     environ={"HTTPS_PROXY": "http://u:p@proxy:3128"})
        >>> opts["http_proxy_host"], opts["http_proxy_port"], opts["http_proxy_auth"]
        ('proxy', 3128, ('u', 'p'))
    """
    env = os.environ if environ is None else environ
    options: Dict[str, Any] = {
        "timeout": config.open_timeout,
        # websocket-client validates UTF-8 in pure Python (~4x slower); json.loads validates it.
        "skip_utf8_validation": True,
        "enable_multithread": True,
    }
    chosen = proxy_for(url, proxy=config.proxy, environ=env)
    if chosen is None:
        options["http_no_proxy"] = ["*"]
    else:
        parts = urlsplit(chosen if "://" in chosen else f"http://{chosen}")
        options["http_proxy_host"] = parts.hostname
        options["http_proxy_port"] = parts.port or (443 if parts.scheme == "https" else 80)
        options["proxy_type"] = "http"
        if parts.username:
            options["http_proxy_auth"] = (unquote(parts.username), unquote(parts.password or ""))
        options["http_proxy_timeout"] = config.open_timeout
    if urlsplit(url).scheme == "wss":
        sslopt: Dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED, "check_hostname": True}
        bundle = _ca_bundle(config, env)
        if bundle:
            sslopt["ca_cert_path" if os.path.isdir(bundle) else "ca_certs"] = bundle
        options["sslopt"] = sslopt
    return options


def _default_connector() -> Connector:
    return websocket.create_connection  # type: ignore[no-any-return]


def connect(
    ticket: Ticket,
    *,
    config: StreamConfig,
    number: int,
    connector: Optional[Connector] = None,
    clock: Callable[[], float] = time.monotonic,
) -> Connection:
    """Open the websocket for ``ticket``.

    Example:
        >>> conn = connect(ticket, config=StreamConfig(), number=1)  # doctest: +SKIP

    Raises:
        GatewayOpenError: the gateway refused the handshake (bad or expired ticket).
        TransportError: the network or TLS failed.
    """
    url = ticket.url
    try:
        ws = (connector or _default_connector())(url, **websocket_options(url, config))
        ws.settimeout(config.recv_timeout)
    except websocket.WebSocketBadStatusException as exc:
        raise GatewayOpenError(
            f"the gateway refused the websocket handshake (HTTP {exc.status_code})",
            status=exc.status_code,
        ) from None
    except (websocket.WebSocketTimeoutException, socket.timeout) as exc:
        raise RequestTimeout(
            f"websocket handshake with {ticket.endpoint} timed out ({type(exc).__name__})"
        ) from None
    except ssl.SSLError as exc:
        raise TransportError(
            f"TLS verification of {ticket.endpoint} failed ({_scrub(str(exc), ticket.ticket)}); "
            "set StreamConfig(ca_bundle=...) behind an intercepting proxy"
        ) from None
    except (websocket.WebSocketException, OSError, ValueError) as exc:
        # Messages may quote the URL, ticket included: only a scrubbed copy goes on.
        raise TransportError(
            f"cannot open the websocket to {ticket.endpoint}: {type(exc).__name__}: "
            f"{_scrub(str(exc), ticket.ticket)}"
        ) from None
    return Connection(ws, number=number, endpoint=ticket.endpoint, clock=clock)


def open_connection(
    session: Any,
    *,
    credentials: Credentials,
    endpoints: Endpoints,
    subscriptions: Sequence[Mapping[str, str]],
    config: StreamConfig,
    number: int,
    origin: Optional[str] = None,
    connector: Optional[Connector] = None,
    clock: Callable[[], float] = time.monotonic,
) -> Connection:
    """A fresh ticket, then the websocket: one new gateway connection, already pinged once
    (the first pong shows it alive without waiting a ping interval).

    Example:
        >>> conn = open_connection(requests.Session(), credentials=creds,  # doctest: +SKIP
        ...     endpoints=Endpoints(), subscriptions=route.subscriptions(),
        ...     config=StreamConfig(), number=1)

    Raises:
        AuthError, GatewayOpenError, TransportError: as :func:`open_ticket` and :func:`connect`.
    """
    ticket = open_ticket(
        session,
        credentials=credentials,
        endpoints=endpoints,
        subscriptions=subscriptions,
        config=config,
        origin=origin,
    )
    conn = connect(ticket, config=config, number=number, connector=connector, clock=clock)
    log.info("connected to %s (connection #%d)", ticket.endpoint, conn.number)
    try:
        conn.ping()
    except ConnectionClosed:
        pass  # the reader finds out on its first recv()
    return conn


def message_id_of(raw: Union[bytes, str]) -> Optional[str]:
    """The messageId of a frame that failed to decode, if one can be found (to answer 400).

    Example:
        >>> message_id_of(b'{"headers": {"messageId": "m1", "topic": 5}}')
        'm1'
    """
    try:
        # Strict UTF-8, as Frame.from_wire: json.loads(bytes) would let invalid bytes through
        # as lone surrogates, which no ack can carry.
        text = bytes(raw).decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        headers = json.loads(text).get("headers")
        mid = headers.get("messageId") if isinstance(headers, dict) else None
    except (ValueError, AttributeError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return mid if isinstance(mid, str) and mid else None


class Connection:
    """One open websocket: a single reader calls :meth:`recv`; any thread may :meth:`send`.

    ``last_alive`` is the monotonic time of the last frame or pong (None before the first);
    ``paused`` is set by the reader while it waits for a handler slot, so silence then is not
    held against the connection.

    Example:
        >>> conn = connect(ticket, config=StreamConfig(), number=1)  # doctest: +SKIP
        >>> conn.send(Ack.ok("m1", {"response": None}).to_wire())  # doctest: +SKIP
    """

    def __init__(
        self,
        ws: Any,
        *,
        number: int,
        endpoint: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.number = number
        self.endpoint = endpoint
        self._ws = ws
        self._clock = clock
        self._send_lock = threading.Lock()
        self._outbox: List[bytes] = []  # acks waiting for the thread that is writing
        self._outbox_lock = threading.Lock()
        self._flushing = False
        self._closed = False
        self.opened_at = clock()
        self.last_alive: Optional[float] = None
        self.frames = 0
        self.paused = False
        self._resumed_at: Optional[float] = None
        self.retiring = False
        self.gateway_id: Optional[str] = None
        self.close_reason: Optional[str] = None
        # Told how many held acks were counted as sent but could not be written.
        self.on_acks_lost: Optional[Callable[[int], None]] = None
        # Large reads and frames parsed from a buffer, for a real websocket-client socket.
        self._reader = fast_reader_for(ws)
        self._writer = fast_writer_for(ws) if self._reader is not None else None
        if self._reader is not None:
            # The buffered frames are read: held acks go out before the socket is read again.
            self._reader.before_fill = self.flush_held

    def __repr__(self) -> str:
        state = "closed" if self._closed else "retiring" if self.retiring else "open"
        return f"<Connection #{self.number} {self.endpoint} {state}>"

    @property
    def closed(self) -> bool:
        """True once closed, aborted or broken by a failed write."""
        return self._closed

    def silent_for(self, now: float) -> float:
        """Seconds since the last sign of life (or since it opened, or the reader resumed)."""
        since = max(self.opened_at, self.last_alive or self.opened_at, self._resumed_at or 0.0)
        return now - since

    def resume(self) -> None:
        """The reader reads again after backpressure: silence counts from now."""
        self._resumed_at = self._clock()
        self.paused = False

    def recv(self) -> Optional[bytes]:
        """The next text frame's bytes, or None after ``recv_timeout`` or a control frame.

        Raises:
            ConnectionClosed: the server closed the connection or the network dropped it.
        """
        reader = self._reader
        if reader is not None:  # it flushes held acks itself, before it reads the socket
            try:
                opcode, data = reader.read()
            except socket.timeout:
                return None
            except websocket.WebSocketConnectionClosedException:
                self._closed = True
                raise ConnectionClosed(self._lost("the connection was lost")) from None
            except (websocket.WebSocketException, OSError, ValueError) as exc:
                self._closed = True
                raise ConnectionClosed(
                    self._lost(f"read failed: {type(exc).__name__}: {exc}")
                ) from exc
            if opcode == 1 or opcode == 2:  # text, binary
                self.last_alive = self._clock()
                self.frames += 1
                return data
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                try:
                    self._ws.send_close()  # as websocket-client's recv_data_frame does
                except (websocket.WebSocketException, OSError):
                    pass
                self._closed_by_peer(data)
            self.last_alive = self._clock()  # ping or pong: the peer is alive
            return None
        self.flush_held()  # about to wait for the network: held acks go out first
        try:
            opcode, frame = self._ws.recv_data_frame(True)
        except (websocket.WebSocketTimeoutException, socket.timeout):
            return None
        except websocket.WebSocketConnectionClosedException:
            self._closed = True
            raise ConnectionClosed(self._lost("the connection was lost")) from None
        except (websocket.WebSocketException, OSError, ValueError) as exc:
            self._closed = True
            raise ConnectionClosed(self._lost(f"read failed: {type(exc).__name__}: {exc}")) from exc
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            self.last_alive = self._clock()
            self.frames += 1
            return bytes(frame.data)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            self._closed_by_peer(frame.data)
        self.last_alive = self._clock()  # ping or pong: the peer is alive
        return None

    def flush_held(self) -> None:
        """Write now the acks held back for the reader (``send_coalesced(hold=True)``); those
        a failed connection could not take are reported to ``on_acks_lost``."""
        if not self._outbox:
            return
        unwritten = self.flush()
        if unwritten:
            if self.on_acks_lost is not None:
                self.on_acks_lost(len(unwritten))
            log.warning(
                "connection #%d failed with %d ack(s) unwritten; DingTalk may deliver them again",
                self.number,
                len(unwritten),
            )

    def _closed_by_peer(self, data: bytes) -> NoReturn:
        code, reason = _close_status(data)
        self._closed = True
        raise ConnectionClosed(
            f"the gateway closed connection #{self.number} (code {code}{', ' + reason if reason else ''})",
            code=code,
            reason=reason,
        )

    def _lost(self, text: str) -> str:
        if self.close_reason:
            return f"connection #{self.number} closed: {self.close_reason}"
        return f"connection #{self.number}: {text}"

    def send(self, text: str) -> None:
        """Send one text frame (thread-safe).

        Raises:
            ConnectionClosed: the connection is closed or the write failed.
        """
        # A lone surrogate (from a "\ud800" escape in a frame, echoed in its ack) has no UTF-8
        # form; it can only sit inside a JSON string, where its \uXXXX escape means the same.
        self._send_many([text.encode("utf-8", "backslashreplace")])

    def send_coalesced(self, text: str, *, hold: bool = False) -> Tuple[bool, List[str]]:
        """Send one text frame (thread-safe), coalescing with other threads' frames: while one
        thread writes, frames handed in by others wait in an outbox, and that thread writes
        them all in one system call once its own write returns. The frame is never delayed
        by a thread that is not writing right now.

        ``hold=True`` (the reader, acking a frame it handled itself) leaves the frame in the
        outbox when nobody is writing: the reader's next :meth:`recv` writes everything held
        before it waits for the network, so a burst's acks leave in a few writes.

        Returns ``(sent, others)``. ``sent`` is True when ``text`` was written, or handed to
        the thread that is writing (which then answers for it). ``others`` holds the frames
        other threads had handed to this one that could not be written because the
        connection closed or the write failed, so the caller can send them elsewhere.
        """
        payload = text.encode("utf-8", "backslashreplace")
        lock = self._outbox_lock
        with lock:
            self._outbox.append(payload)
            if self._flushing or (hold and len(self._outbox) < _HOLD_AT_MOST):
                return True, []  # the writing thread, or the reader's next recv(), sends it
            self._flushing = True
        return self._flush_outbox(payload)

    def flush(self) -> List[str]:
        """Write the frames held in the outbox, unless another thread is writing (it writes
        them). Returns the frames that could not be written (the connection failed)."""
        with self._outbox_lock:
            if self._flushing or not self._outbox:
                return []
            self._flushing = True
        return self._flush_outbox(None)[1]

    def _flush_outbox(self, payload: Optional[bytes]) -> Tuple[bool, List[str]]:
        """Write the outbox until it is empty (this thread holds ``_flushing``); ``payload``
        is the caller's own frame, in the first round."""
        lock = self._outbox_lock
        own_written = False  # the first round carries this thread's own frame
        while True:
            with lock:
                batch = self._outbox
                if not batch:
                    self._flushing = False
                    return True, []
                self._outbox = []
            try:
                self._send_many(batch)
            except Exception as exc:
                # Whatever failed, the outbox must not stay claimed by this thread, or every
                # later ack would wait in it forever; the others go back to the caller.
                if not isinstance(exc, ConnectionClosed):
                    log.exception("unexpected error writing acks on connection #%d", self.number)
                with lock:
                    batch += self._outbox
                    self._outbox = []
                    self._flushing = False
                return own_written, [b.decode("utf-8") for b in batch if b is not payload]
            own_written = True

    def _send_many(self, payloads: List[bytes]) -> None:
        with self._send_lock:
            if self._closed:
                raise ConnectionClosed(f"connection #{self.number} is closed")
            try:
                if self._writer is not None:
                    self._writer.send_texts(payloads)
                else:
                    for payload in payloads:
                        self._ws.send(payload, websocket.ABNF.OPCODE_TEXT)
            except (websocket.WebSocketException, OSError) as exc:
                # A partial write leaves the stream unusable: stop using this socket.
                self._closed = True
                raise ConnectionClosed(
                    f"send on connection #{self.number} failed: {type(exc).__name__}"
                ) from exc

    def ping(self) -> None:
        """Send a websocket ping; the pong shows up as ``last_alive``.

        Raises:
            ConnectionClosed: the write failed.
        """
        with self._send_lock:
            if self._closed:
                raise ConnectionClosed(f"connection #{self.number} is closed")
            try:
                self._ws.ping(b"")
            except (websocket.WebSocketException, OSError) as exc:
                self._closed = True
                raise ConnectionClosed(
                    f"ping on connection #{self.number} failed: {type(exc).__name__}"
                ) from exc

    def abort(self, reason: str) -> None:
        """Shut the socket down from any thread; the reader's recv() then fails at once."""
        self.close_reason = self.close_reason or reason
        self._closed = True
        try:
            self._ws.abort()
        except Exception:  # best effort: the socket may be gone already
            pass

    def close(self, timeout: float = 1.0) -> None:
        """Close politely (close frame, short wait for the answer); only the reader may call
        it, because websocket-client reads the socket while waiting. Acks another thread is
        still writing (see :meth:`send_coalesced`) go out first, within ``timeout``."""
        deadline = time.monotonic() + timeout
        if not self._closed:
            self.flush_held()
        while self._flushing and not self._closed and time.monotonic() < deadline:
            time.sleep(0.0005)
        with self._send_lock:
            was_closed, self._closed = self._closed, True
        if self._reader is not None:
            self._reader.hand_back()  # websocket-client's close() reads the rest itself
        try:
            if was_closed:
                self._ws.shutdown()
            else:
                self._ws.close(timeout=timeout)
        except Exception:  # closing a broken socket must not mask why it broke
            try:
                self._ws.shutdown()
            except Exception:
                pass


def _close_status(data: bytes) -> tuple[Optional[int], Optional[str]]:
    if len(data) < 2:
        return None, None
    code = int.from_bytes(data[:2], "big")
    reason = data[2:].decode("utf-8", "replace") or None
    return code, reason
