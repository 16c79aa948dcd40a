"""Opening a gateway connection: the ticket (HTTP), then the websocket handshake. requests'
and websocket-client's exceptions become dingsync errors here. The ticket is a credential (it
opens one connection within 90 s): it is never logged nor left in an error message.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence
from urllib.parse import quote_plus, urlsplit

import attrs
import websocket

from .._version import __version__
from ..config import Credentials, Endpoints, StreamConfig
from ..errors import AuthError, GatewayOpenError, RequestTimeout, TransportError
from ..proxies import ca_bundle_for, websocket_proxy_options
from .connection import Connection

__all__ = [
    "Ticket",
    "Connector",
    "GATEWAY_OPEN_PATH",
    "open_ticket",
    "websocket_options",
    "origin_stamp",
    "open_connection",
]

log = logging.getLogger("dingsync.stream")

GATEWAY_OPEN_PATH = "/v1.0/gateway/connections/open"

#: Opens a websocket; same signature as ``websocket.create_connection(url, **options)``.
Connector = Callable[..., Any]


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


def origin_stamp(api: str) -> str:
    """``localIp`` for the gateway: this machine's address, hostname and pid.

    Example:
        >>> origin_stamp("http://127.0.0.1:8080").startswith("127.0.0.1,")
        True
    """
    # localIp is free text for DingTalk's diagnosis; hostname and pid tell which of several
    # processes holds a connection (ghost connections swallow pushes, user-pain P7).
    parts = urlsplit(api)
    try:  # the address this machine uses to reach the gateway; no packet is sent
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((parts.hostname or "127.0.0.1", parts.port or 443))
            ip = str(probe.getsockname()[0])
    except (OSError, UnicodeError):
        ip = "127.0.0.1"
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
    agent = f"{config.user_agent}/{__version__} python-requests"
    try:
        resp = session.post(
            url,
            json=body,
            headers={"Accept": "application/json", "User-Agent": agent},
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
            "check DINGTALK_CLIENT_ID and DINGTALK_CLIENT_SECRET, and, if the app has an IP "
            "allow-list (IP 白名单), that this machine's public address is on it",
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


def websocket_options(
    url: str, config: StreamConfig, *, environ: Optional[Mapping[str, str]] = None
) -> Dict[str, Any]:
    """Keyword arguments for ``websocket.create_connection(url, **options)``: the handshake
    timeout, the proxy (see :func:`~dingsync.proxies.websocket_proxy_options`) and TLS,
    always verified.

    Example:
        >>> opts = websocket_options("wss://gw.example.com/connect", StreamConfig(),
        ...     environ={"HTTPS_PROXY": "http://u:p@proxy:3128"})
        >>> opts["http_proxy_host"], opts["http_proxy_port"], opts["http_proxy_auth"]
        ('proxy', 3128, ('u', 'p'))
    """
    env = os.environ if environ is None else environ
    options = websocket_proxy_options(url, config.proxy, config.open_timeout, env)
    options["timeout"] = config.open_timeout
    if urlsplit(url).scheme == "wss":
        sslopt: Dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED, "check_hostname": True}
        bundle = ca_bundle_for(config.ca_bundle, env)
        if bundle:
            sslopt["ca_cert_path" if os.path.isdir(bundle) else "ca_certs"] = bundle
        options["sslopt"] = sslopt
    return options


def _default_connector() -> Connector:
    return websocket.create_connection  # type: ignore[no-any-return]


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
    on_acks: Optional[Callable[[str, int], None]] = None,
    threads: str = "dingsync",
) -> Connection:
    """A fresh ticket, then the websocket handshake: one new gateway connection, its writer
    thread running, already pinged once (the first pong shows it alive at once).

    Example:
        >>> conn = open_connection(requests.Session(), credentials=creds,  # doctest: +SKIP
        ...     endpoints=Endpoints(), subscriptions=route.subscriptions(),
        ...     config=StreamConfig(), number=1)

    Raises:
        AuthError, GatewayOpenError, TransportError: as :func:`open_ticket`; also
            GatewayOpenError when the handshake is refused (a bad or expired ticket) and
            TransportError when the network or TLS fails.
    """
    ticket = open_ticket(
        session,
        credentials=credentials,
        endpoints=endpoints,
        subscriptions=subscriptions,
        config=config,
        origin=origin,
    )
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
        threads=threads,
    ).start()
    log.info("connected to %s (connection #%d)", ticket.endpoint, conn.number)
    conn.ping()
    return conn
