"""Opening a gateway connection: the ticket (HTTP), then the websocket handshake.

This module is the boundary where requests and websocket-client exceptions become dingsync
errors: :class:`~dingsync.errors.AuthError` (401), :class:`~dingsync.errors.GatewayOpenError`,
:class:`~dingsync.errors.TransportError` and :class:`~dingsync.errors.ConnectionClosed`.

The ticket is a credential (it opens one connection within 90 s), so it is never logged and
never left in an error message.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
import time
from typing import (
    Any,
    Callable,
    Dict,
    Mapping,
    Optional,
    Sequence,
    Union,
)
from urllib.parse import quote_plus, unquote, urlsplit

import attrs
import websocket

from .._version import __version__
from ..config import Credentials, Endpoints, StreamConfig
from ..errors import (
    AuthError,
    GatewayOpenError,
    RequestTimeout,
    TransportError,
)
from .connection import Connection

__all__ = [
    "Ticket",
    "Connector",
    "GATEWAY_OPEN_PATH",
    "open_ticket",
    "connect",
    "proxy_for",
    "websocket_options",
    "local_ip",
    "origin_stamp",
    "open_connection",
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
    on_acks: Optional[Callable[[int, int], None]] = None,
) -> Connection:
    """Open the websocket for ``ticket``; the connection's writer thread is running.

    Example:
        >>> conn = connect(ticket, config=StreamConfig(), number=1)  # doctest: +SKIP

    Raises:
        GatewayOpenError: the gateway refused the handshake (bad or expired ticket).
        TransportError: the network or TLS failed.
    """
    url = ticket.url
    try:
        ws = (connector or _default_connector())(url, **websocket_options(url, config))
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
    conn = Connection(
        ws,
        number=number,
        endpoint=ticket.endpoint,
        dead_after=config.dead_after,
        clock=clock,
        on_acks=on_acks,
    )
    return conn.start()


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
    on_acks: Optional[Callable[[int, int], None]] = None,
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
    conn = connect(
        ticket, config=config, number=number, connector=connector, clock=clock, on_acks=on_acks
    )
    log.info("connected to %s (connection #%d)", ticket.endpoint, conn.number)
    conn.ping()
    return conn
