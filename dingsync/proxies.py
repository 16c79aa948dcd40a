"""Which HTTP proxy and which CA bundle a URL uses, by the rules requests applies.

requests applies them to every HTTP call by itself; the websocket (websocket-client) needs
them spelled out, and both legs of a gateway connection must agree.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any, Dict, Mapping, Optional, Union
from urllib.parse import unquote, urlsplit

__all__ = ["proxy_for", "ca_bundle_for", "websocket_proxy_options"]

_PROXY_KEYS = {
    True: ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"),
    False: ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"),
}


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


def ca_bundle_for(
    configured: Optional[str], environ: Optional[Mapping[str, str]] = None
) -> Optional[str]:
    """The CA bundle to verify TLS with: ``configured``, else ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE``, else certifi's, the same one requests verifies with.

    Example:
        >>> ca_bundle_for("/etc/ssl/corp.pem")
        '/etc/ssl/corp.pem'
    """
    env = os.environ if environ is None else environ
    explicit = configured or env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE")
    if explicit:
        return explicit
    try:
        import certifi
    except ImportError:  # pragma: no cover - requests depends on certifi
        return None
    return str(certifi.where())


def websocket_proxy_options(
    url: str, proxy: Optional[str], timeout: float, environ: Optional[Mapping[str, str]] = None
) -> Dict[str, Any]:
    """The proxy keyword arguments of ``websocket.create_connection`` for ``url``: those of
    :func:`proxy_for`'s answer, or ``http_no_proxy=["*"]`` when none applies, which stops
    websocket-client from guessing on its own.

    Example:
        >>> websocket_proxy_options("wss://gw.example.com/", "http://p:3128", 5.0)["http_proxy_host"]
        'p'
    """
    chosen = proxy_for(url, proxy=proxy, environ=environ)
    if chosen is None:
        return {"http_no_proxy": ["*"]}
    parts = urlsplit(chosen if "://" in chosen else f"http://{chosen}")
    options: Dict[str, Any] = {
        "http_proxy_host": parts.hostname,
        "http_proxy_port": parts.port or (443 if parts.scheme == "https" else 80),
        "proxy_type": "http",
        "http_proxy_timeout": timeout,
    }
    if parts.username:
        options["http_proxy_auth"] = (unquote(parts.username), unquote(parts.password or ""))
    return options
