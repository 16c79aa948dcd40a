"""The websocket option builder: proxies from config or environment, TLS, speed switches."""

from __future__ import annotations

import ssl
from typing import Any, Dict, List

import pytest
import websocket

import dingsync
from dingsync.config import StreamConfig
from dingsync.proxies import proxy_for
from dingsync.stream.gateway import Ticket, websocket_options
from dingsync.testing import FakeDingTalk

WSS = "wss://wss-open-connection.dingtalk.com:443/connect"


def test_no_proxy_configured_disables_websocket_client_guessing() -> None:
    """Without a proxy, websocket-client is told not to look for one itself."""
    opts = websocket_options(WSS, StreamConfig(), environ={})
    assert opts["http_no_proxy"] == ["*"]
    assert "http_proxy_host" not in opts
    assert opts["timeout"] == StreamConfig().open_timeout


def test_https_proxy_from_the_environment_with_credentials() -> None:
    opts = websocket_options(
        WSS, StreamConfig(), environ={"HTTPS_PROXY": "http://alice:p%40ss@proxy.corp:3128"}
    )
    assert opts["http_proxy_host"] == "proxy.corp"
    assert opts["http_proxy_port"] == 3128
    assert opts["http_proxy_auth"] == ("alice", "p@ss")
    assert opts["proxy_type"] == "http"
    assert "http_no_proxy" not in opts


def test_lowercase_and_all_proxy_are_honoured() -> None:
    assert proxy_for(WSS, environ={"https_proxy": "http://p1:1"}) == "http://p1:1"
    assert proxy_for(WSS, environ={"ALL_PROXY": "http://p2:2"}) == "http://p2:2"
    assert proxy_for(WSS, environ={"ALL_PROXY": "socks5://p3:3"}) is None
    opts = websocket_options(WSS, StreamConfig(), environ={"HTTPS_PROXY": "proxy.corp"})
    assert (opts["http_proxy_host"], opts["http_proxy_port"]) == ("proxy.corp", 80)


def test_plain_ws_uses_http_proxy() -> None:
    env = {"HTTP_PROXY": "http://plain:8080", "HTTPS_PROXY": "http://secure:8443"}
    assert proxy_for("ws://127.0.0.1:9/connect", environ=env) == "http://plain:8080"
    assert proxy_for(WSS, environ=env) == "http://secure:8443"


@pytest.mark.parametrize(
    "no_proxy",
    [
        "*",
        "dingtalk.com",
        ".dingtalk.com",
        "wss-open-connection.dingtalk.com:443",
        "a.com, dingtalk.com",
    ],
)
def test_no_proxy_excludes_matching_hosts(no_proxy: str) -> None:
    env = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": no_proxy}
    assert websocket_options(WSS, StreamConfig(), environ=env)["http_no_proxy"] == ["*"]


def test_no_proxy_cidr_and_non_matching_names() -> None:
    env = {"HTTP_PROXY": "http://proxy:3128", "no_proxy": "10.0.0.0/8,notdingtalk.com"}
    assert proxy_for("ws://10.1.2.3:80/connect", environ=env) is None
    assert proxy_for("ws://gw.dingtalk.com/connect", environ=env) == "http://proxy:3128"


def test_explicit_proxy_wins_over_the_environment() -> None:
    config = StreamConfig(proxy="http://bob:pw@explicit:9000")
    env = {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "*"}
    opts = websocket_options(WSS, config, environ=env)
    assert (opts["http_proxy_host"], opts["http_proxy_port"]) == ("explicit", 9000)
    assert opts["http_proxy_auth"] == ("bob", "pw")


def test_tls_is_verified_with_the_configured_bundle(tmp_path: object) -> None:
    """wss always verifies; ca_bundle (or REQUESTS_CA_BUNDLE) is what it trusts."""
    opts = websocket_options(WSS, StreamConfig(ca_bundle="/etc/corp-ca.pem"), environ={})
    assert opts["sslopt"]["cert_reqs"] == ssl.CERT_REQUIRED
    assert opts["sslopt"]["check_hostname"] is True
    assert opts["sslopt"]["ca_certs"] == "/etc/corp-ca.pem"
    env_opts = websocket_options(WSS, StreamConfig(), environ={"REQUESTS_CA_BUNDLE": "/x.pem"})
    assert env_opts["sslopt"]["ca_certs"] == "/x.pem"
    assert "sslopt" not in websocket_options("ws://127.0.0.1:1/connect", StreamConfig(), environ={})


def test_ticket_never_shows_in_repr_and_is_url_encoded() -> None:
    ticket = Ticket(endpoint="wss://gw:443/connect", ticket="a b/c")
    assert "a b" not in repr(ticket)
    assert ticket.url == "wss://gw:443/connect?ticket=a+b%2Fc"


def test_the_connector_seam_gets_the_url_and_options(dingtalk: FakeDingTalk) -> None:
    """An injected connector opens the websocket with the ticket URL and the built options."""
    seen: List[Dict[str, Any]] = []

    def connector(url: str, **options: Any) -> Any:
        seen.append({"url": url, **options})
        return websocket.create_connection(url, **options)

    route = dingsync.Router()
    route.chatbot(lambda msg, ctx: None)
    client = dingsync.StreamClient(
        dingtalk.credentials,
        route,
        endpoints=dingtalk.endpoints,
        config=StreamConfig(),
        connector=connector,
    )
    with client:
        assert dingtalk.wait_for_ack(dingtalk.push_chatbot("via seam"))["code"] == 200
    (call,) = seen
    assert call["url"].startswith(dingtalk.ws_endpoint + "?ticket=")
