"""``dingsync doctor``: the checks, one line each with a hint per failure.

Credentials, the endpoints and the proxies in use; DNS and TLS of each host; a token of each
style; a Stream gateway ticket and the DNS and TLS of the gateway host it names. Passwords in
URLs are masked, and no secret, token or ticket is ever printed.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import time
from typing import Optional
from urllib.parse import urlsplit

import click

from .config import Credentials, Endpoints
from .errors import ConfigurationError, DingSyncError, TransportError

__all__ = ["diagnose", "GATEWAY_401_HINT"]


class _Report:
    def __init__(self) -> None:
        self.failed = False

    def line(self, status: str, name: str, detail: str, hint: Optional[str] = None) -> None:
        click.echo(f"[{status:^4}] {name}: {detail}")
        if hint:
            click.echo(f"       hint: {hint}")
        if status == "FAIL":
            self.failed = True


def _redact_url(url: str) -> str:
    """``url`` with any user:password@ masked (proxies and endpoints may carry one)."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def _proxy_for(url: str, explicit: Optional[str]) -> Optional[str]:
    if explicit:
        return explicit
    import requests.utils

    if requests.utils.should_bypass_proxies(url, no_proxy=None):
        return None
    proxies = requests.utils.get_environ_proxies(url)
    return proxies.get(urlsplit(url).scheme) or proxies.get("all")


def _check_host(
    report: _Report,
    label: str,
    url: str,
    proxy: Optional[str],
    ca_bundle: Optional[str],
    timeout: float,
) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        report.line(
            "FAIL",
            f"URL {label}",
            f"{_redact_url(url)}: {exc}",
            "fix the port in DINGTALK_OPENAPI_ENDPOINT / DINGTALK_OAPI_ENDPOINT",
        )
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        address = str(infos[0][4][0])
        report.line("ok", f"DNS {label}", f"{host} -> {address}")
    except OSError as exc:
        if proxy:
            report.line(
                "info",
                f"DNS {label}",
                f"{host} does not resolve here ({exc}); the proxy resolves it",
            )
        else:
            report.line(
                "FAIL",
                f"DNS {label}",
                f"{host} does not resolve ({exc})",
                "check the network and DNS, or set HTTPS_PROXY if egress goes through a proxy",
            )
            return
    if parts.scheme != "https":
        report.line(
            "skip",
            f"TLS {label}",
            f"{_redact_url(url)} is plain http:// (an emulator?); no TLS to check",
        )
        return
    if proxy:
        report.line(
            "skip", f"TLS {label}", "traffic goes through the proxy; the token fetch checks it"
        )
        return
    context = ssl.create_default_context(cafile=ca_bundle)
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                report.line(
                    "ok", f"TLS {label}", f"{tls.version()} to {host}:{port}, certificate verified"
                )
    except ssl.SSLError as exc:
        report.line(
            "FAIL",
            f"TLS {label}",
            f"{exc}",
            "a TLS-inspecting proxy or an old CA store; pass --ca-bundle (or REQUESTS_CA_BUNDLE)",
        )
    except OSError as exc:
        report.line(
            "FAIL",
            f"TLS {label}",
            f"cannot connect to {host}:{port} ({exc})",
            "a firewall may block outbound 443; set HTTPS_PROXY if there is a proxy",
        )


GATEWAY_401_HINT = (
    "DingTalk answers 401 for two causes: (1) DINGTALK_CLIENT_ID / DINGTALK_CLIENT_SECRET are "
    "not this app's (developer console: the app's Credentials & Basic Info page); (2) the app "
    "has an IP allow-list (IP 白名单, under Security settings) without this machine's public "
    "address"
)


def _check_gateway(
    report: _Report,
    creds: Credentials,
    endpoints: Endpoints,
    proxy: Optional[str],
    ca_bundle: Optional[str],
    timeout: float,
) -> None:
    """Ask the Stream gateway for a connection ticket, then check the gateway host it names."""
    import requests

    from .config import StreamConfig
    from .errors import AuthError
    from .frames import Topic
    from .stream.gateway import open_ticket

    config = StreamConfig(open_timeout=timeout, proxy=proxy, ca_bundle=ca_bundle)
    subscriptions = [{"type": "CALLBACK", "topic": Topic.CHATBOT}]
    with requests.Session() as session:
        try:
            ticket = open_ticket(
                session,
                credentials=creds,
                endpoints=endpoints,
                subscriptions=subscriptions,
                config=config,
            )
        except AuthError as exc:
            report.line("FAIL", "stream ticket", f"HTTP 401 {exc.code or ''}", GATEWAY_401_HINT)
            return
        except (DingSyncError, ValueError) as exc:  # ValueError: a malformed endpoint URL
            report.line(
                "FAIL",
                "stream ticket",
                _redact_url(str(exc)),
                "the app must use Stream mode (developer console: the robot's message receiving "
                "mode); see the DNS/TLS/proxy lines above",
            )
            return
    # the ticket itself opens a connection: it is never printed
    report.line("ok", "stream ticket", f"granted; gateway {_redact_url(ticket.endpoint)}")
    scheme, _, rest = ticket.endpoint.partition("://")
    url = f"{'https' if scheme == 'wss' else 'http'}://{rest}"
    _check_host(report, "stream gateway", url, _proxy_for(url, proxy), ca_bundle, timeout)


def diagnose(proxy: Optional[str], ca_bundle: Optional[str], timeout: float) -> bool:
    """Run every check, printing a line each; True when none failed.

    Example:
        >>> diagnose(None, None, 5.0)  # doctest: +SKIP
        [ ok ] credentials: client id ding..., secret set (not shown)
        ...
        True
    """
    report = _Report()
    creds: Optional[Credentials] = None
    try:
        creds = Credentials.from_env()
        report.line("ok", "credentials", f"client id {creds.client_id}, secret set (not shown)")
    except ConfigurationError as exc:
        report.line(
            "FAIL", "credentials", str(exc), "export both variables, e.g. in the service's env file"
        )
    try:
        endpoints = Endpoints.from_env()
    except ConfigurationError as exc:
        report.line(
            "FAIL", "endpoints", str(exc), "fix DINGTALK_OPENAPI_ENDPOINT / DINGTALK_OAPI_ENDPOINT"
        )
        return False
    report.line(
        "info",
        "endpoints",
        f"api {_redact_url(endpoints.api)}, oapi {_redact_url(endpoints.oapi)}",
    )
    env_proxies = [
        f"{name}={_redact_url(os.environ[name])}"
        for name in (
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "NO_PROXY",
            "no_proxy",
        )
        if os.environ.get(name)
    ]
    if proxy:
        report.line("info", "proxy", f"--proxy {_redact_url(proxy)} (overrides the environment)")
    else:
        report.line(
            "info", "proxy", ", ".join(env_proxies) if env_proxies else "none configured (direct)"
        )
    for label, url in (("api", endpoints.api), ("oapi", endpoints.oapi)):
        used = _proxy_for(url, proxy)
        if used:
            report.line("info", f"route {label}", f"via proxy {_redact_url(used)}")
        _check_host(report, label, url, used, ca_bundle, timeout)
    if creds is not None:
        from .api import NO_RETRY, ApiClient

        api = ApiClient(
            creds,
            endpoints=endpoints,
            timeout=timeout,
            proxy=proxy,
            ca_bundle=ca_bundle,
            retry=NO_RETRY,
        )
        for kind in ("new", "old"):
            try:
                current = api.access_token(kind)
                left = current.expires_at - time.time()
                report.line("ok", f"token ({kind}-style)", f"fetched, valid for {left:.0f} s")
            except TransportError as exc:
                report.line(
                    "FAIL", f"token ({kind}-style)", str(exc), "see the DNS/TLS/proxy lines above"
                )
            except ConfigurationError as exc:
                report.line(
                    "FAIL",
                    f"token ({kind}-style)",
                    str(exc),
                    "fix DINGTALK_OPENAPI_ENDPOINT / DINGTALK_OAPI_ENDPOINT",
                )
            except DingSyncError as exc:
                report.line(
                    "FAIL",
                    f"token ({kind}-style)",
                    str(exc),
                    "check DINGTALK_CLIENT_ID / DINGTALK_CLIENT_SECRET in the developer console "
                    "(app -> Credentials & Basic Info)",
                )
        api.close()
        _check_gateway(report, creds, endpoints, proxy, ca_bundle, timeout)
    return not report.failed
