"""The gateway's HTTP side: /v1.0/gateway/connections/open and the /connect ticket check."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests
import websocket
from _fake_ws_helpers import OPEN_PATH, connect, open_body, open_ticket, ws_url

from dingsync.testing import FakeDingTalk, Subscription


@pytest.fixture
def fake():
    with FakeDingTalk(client_secret="s3cr3t-value") as f:
        yield f


def _handshake_status(url: str) -> int:
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(url, timeout=2)
    return info.value.status_code


def test_open_returns_endpoint_with_explicit_port_and_connect_path(fake):
    """The endpoint is ws://127.0.0.1:<port>/connect and the ticket a fresh UUID string."""
    resp = open_ticket(fake)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"endpoint", "ticket"}
    parts = urlsplit(body["endpoint"])
    assert (parts.scheme, parts.hostname, parts.path) == ("ws", "127.0.0.1", "/connect")
    assert parts.port is not None and parts.port > 0
    assert len(body["ticket"]) == 36


def test_open_is_recorded_without_the_secret(fake):
    """open_requests keeps subscriptions, ua, localIp, client id; no repr shows secret or ticket."""
    ticket = open_ticket(fake).json()["ticket"]
    (req,) = fake.open_requests
    assert req.client_id == fake.client_id
    assert req.ua == "dingsync-tests/1.0" and req.local_ip == "10.0.0.7"
    assert Subscription("EVENT", "*") in req.subscriptions
    assert req.status == 200
    ws = connect(fake)
    ws.close()
    text = repr(fake.open_requests) + repr(fake.connections)
    assert "s3cr3t-value" not in text and ticket not in text


def test_bad_credentials_get_401_auth_failed(fake):
    """Wrong secret: HTTP 401 with DingTalk's exact authFailed body (and it is recorded)."""
    resp = requests.post(
        fake.api_base + OPEN_PATH, json=open_body(fake, clientSecret="nope"), timeout=5
    )
    assert resp.status_code == 401
    body = resp.json()
    assert list(body) == ["requestid", "code", "message"]
    assert body["code"] == "authFailed" and body["message"] == "鉴权失败"
    assert fake.open_requests[-1].status == 401


@pytest.mark.parametrize(
    "body, field",
    [
        (b"not json", "JSON"),
        (b"[]", "object"),
        (b'{"clientSecret": "x", "subscriptions": []}', "clientId"),
        (b'{"clientId": "test-client-id", "clientSecret": "x"}', "subscriptions"),
        (
            b'{"clientId": "a", "clientSecret": "b", "subscriptions": [{"type": "BOGUS", "topic": "*"}]}',
            "type",
        ),
        (
            b'{"clientId": "a", "clientSecret": "b", "subscriptions": [{"type": "EVENT", "topic": "x"}]}',
            "EVENT",
        ),
        (b'{"clientId": "a", "clientSecret": "b", "subscriptions": [], "extras": 5}', "extras"),
    ],
)
def test_malformed_open_body_is_400_with_envelope(fake, body, field):
    """A malformed body is HTTP 400 with {code, message, requestid}; the message names the field."""
    resp = requests.post(
        fake.api_base + OPEN_PATH,
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert resp.status_code == 400
    envelope = resp.json()
    assert {"code", "message", "requestid"} <= set(envelope)
    assert field in envelope["message"]
    assert fake.open_requests == []


def test_go_style_open_with_system_subscriptions_and_null_extras(fake):
    """SYSTEM subscriptions, "extras": null and a null localIp are accepted, as Go sends them."""
    subs = [
        {"type": "SYSTEM", "topic": "ping"},
        {"type": "SYSTEM", "topic": "disconnect"},
        {"type": "EVENT", "topic": "*"},
    ]
    resp = open_ticket(fake, subs, extras=None, localIp=None)
    assert resp.status_code == 200
    assert fake.open_requests[-1].extras is None


def test_fail_next_applies_to_the_gateway_route(fake):
    """fail_next makes the next open fail with the given status; the one after succeeds."""
    fake.fail_next("POST", OPEN_PATH, status=503, body={"code": "ServiceUnavailable"})
    assert open_ticket(fake).status_code == 503
    assert open_ticket(fake).status_code == 200
    assert fake.count("POST", OPEN_PATH) == 2


def test_ticket_is_single_use(fake):
    """A ticket opens one connection; the second handshake with it gets HTTP 403."""
    body = open_ticket(fake).json()
    ws = websocket.create_connection(ws_url(body["endpoint"], body["ticket"]), timeout=2)
    try:
        assert _handshake_status(ws_url(body["endpoint"], body["ticket"])) == 403
    finally:
        ws.close()
    assert (403, "ticketUsed") in fake.handshake_rejections


def test_unknown_or_missing_ticket_is_401_and_wrong_path_404(fake):
    """An unknown or missing ticket is HTTP 401; a path other than /connect is 404."""
    endpoint = open_ticket(fake).json()["endpoint"]
    assert _handshake_status(ws_url(endpoint, "no-such-ticket")) == 401
    assert _handshake_status(endpoint) == 401
    assert _handshake_status(endpoint.replace("/connect", "/other") + "?ticket=x") == 404


def test_ticket_expires_after_90_seconds_of_emulator_clock(fake):
    """advance(91) expires a ticket (403); a ticket 89 s old still connects."""
    old = open_ticket(fake).json()
    fake.advance(91)
    assert _handshake_status(ws_url(old["endpoint"], old["ticket"])) == 403
    fresh = open_ticket(fake).json()
    fake.advance(89)
    ws = websocket.create_connection(ws_url(fresh["endpoint"], fresh["ticket"]), timeout=2)
    ws.close()
    assert (403, "ticketExpired") in fake.handshake_rejections
