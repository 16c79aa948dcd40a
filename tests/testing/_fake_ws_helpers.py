"""Plays the client by hand (requests + websocket-client) against FakeDingTalk."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import quote_plus

import requests
import websocket

from dingsync.testing import FakeDingTalk, payloads

OPEN_PATH = "/v1.0/gateway/connections/open"
ALL_TOPICS: List[Dict[str, str]] = [
    {"type": "EVENT", "topic": "*"},
    {"type": "CALLBACK", "topic": payloads.CHATBOT_TOPIC},
    {"type": "CALLBACK", "topic": payloads.CARD_CALLBACK_TOPIC},
]


def open_body(
    fake: FakeDingTalk, subscriptions: Optional[List[Dict[str, str]]] = None, **overrides: Any
) -> Dict[str, Any]:
    body: Dict[str, Any] = {
        "clientId": fake.client_id,
        "clientSecret": fake.client_secret,
        "subscriptions": ALL_TOPICS if subscriptions is None else subscriptions,
        "ua": "dingsync-tests/1.0",
        "localIp": "10.0.0.7",
    }
    body.update(overrides)
    return body


def open_ticket(
    fake: FakeDingTalk, subscriptions: Optional[List[Dict[str, str]]] = None, **overrides: Any
) -> requests.Response:
    return requests.post(
        fake.api_base + OPEN_PATH,
        json=open_body(fake, subscriptions, **overrides),
        headers={"Accept": "application/json"},
        timeout=5,
    )


def ws_url(endpoint: str, ticket: str) -> str:
    return f"{endpoint}?ticket={quote_plus(ticket)}"


def connect(
    fake: FakeDingTalk, subscriptions: Optional[List[Dict[str, str]]] = None, timeout: float = 2.0
) -> websocket.WebSocket:
    """Open a ticket and connect; returns once the emulator has registered the connection."""
    before = len(fake.connections)
    resp = open_ticket(fake, subscriptions)
    resp.raise_for_status()
    body = resp.json()
    ws = websocket.create_connection(ws_url(body["endpoint"], body["ticket"]), timeout=timeout)
    fake.wait_until(lambda: len(fake.connections) > before, 2.0)
    return ws


def recv_json(ws: websocket.WebSocket, timeout: float = 2.0) -> Dict[str, Any]:
    ws.settimeout(timeout)
    frame = json.loads(ws.recv())
    assert isinstance(frame, dict)
    return frame


def send_ack(
    ws: websocket.WebSocket,
    frame: Mapping[str, Any],
    data: Any = None,
    *,
    code: int = 200,
    message: str = "OK",
) -> None:
    """Ack a received frame the way the docs show (data echoed for SYSTEM frames)."""
    if data is None:
        data = frame["data"] if frame.get("type") == "SYSTEM" else {"response": None}
    ws.send(
        json.dumps(payloads.ack(frame["headers"]["messageId"], data, code=code, message=message))
    )


def no_frame_within(ws: websocket.WebSocket, seconds: float) -> bool:
    ws.settimeout(seconds)
    try:
        ws.recv()
    except websocket.WebSocketTimeoutException:
        return True
    return False
