"""The raw limit of this stack: one websocket-client loop, recv -> json.loads -> send a minimal ack.

No threads, no routing, no models: the ceiling a websocket-client based client can reach on this
machine. It uses the fast settings (``skip_utf8_validation=True``: ``json.loads`` validates the text
anyway; websocket-client's pure-Python UTF-8 check alone makes it ~4x slower) and exits when the
connection closes (it never reconnects).
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote_plus

import requests
import websocket

from ._common import parse_args, start_watchdog

CHATBOT_TOPIC = "/v1.0/im/bot/messages/get"
CALLBACK_ACK = (
    '{"code":200,"headers":{"contentType":"application/json","messageId":"%s"},'
    '"message":"OK","data":"{\\"response\\":null}"}'
)


def open_ticket() -> str:
    """Register a ticket with the gateway; returns the websocket URL to connect to."""
    response = requests.post(
        os.environ["DINGTALK_OPENAPI_ENDPOINT"] + "/v1.0/gateway/connections/open",
        json={
            "clientId": os.environ["DINGTALK_CLIENT_ID"],
            "clientSecret": os.environ["DINGTALK_CLIENT_SECRET"],
            "subscriptions": [{"type": "CALLBACK", "topic": CHATBOT_TOPIC}],
            "ua": "bench-raw-loop/1.0",
        },
        timeout=10,
    )
    response.raise_for_status()
    body = response.json()
    return f"{body['endpoint']}?ticket={quote_plus(body['ticket'])}"


def main() -> None:
    args = parse_args(__doc__ or "")
    start_watchdog(args.max_seconds)
    ws = websocket.create_connection(
        open_ticket(), skip_utf8_validation=True, enable_multithread=False, timeout=None
    )
    loads, recv, send = json.loads, ws.recv, ws.send
    try:
        while True:
            frame = loads(recv())
            headers = frame["headers"]
            if frame["type"] == "SYSTEM":  # ping: echo its data; disconnect: ack it too
                send(
                    json.dumps(
                        {
                            "code": 200,
                            "headers": {
                                "contentType": "application/json",
                                "messageId": headers["messageId"],
                            },
                            "message": "OK",
                            "data": frame.get("data", "{}"),
                        }
                    )
                )
            else:
                send(CALLBACK_ACK % headers["messageId"])
    except (websocket.WebSocketException, OSError):
        pass  # closed by the gateway: this loop does not reconnect
    finally:
        ws.close()


if __name__ == "__main__":
    main()
