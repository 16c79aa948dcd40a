"""Requests as DingTalk would send them to a CallbackApp, built from the reference text."""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Union

from callback_reference import reference_encrypt, reference_robot_sign, reference_signature

import dingsync
from dingsync.callbacks import CallbackApp, CallbackRequest
from dingsync.testing.payloads import chatbot_data

CLIENT_ID = "test-client-id"
SECRET = "test-client-secret"
TOKEN = "event-token-1"
AES_KEY = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7"
CARD_SECRET = "card-secret-0123456789abcdef"
NOW_MS = 1_700_000_000_000
CREDENTIALS = dingsync.Credentials(client_id=CLIENT_ID, client_secret=SECRET)
JSON = "application/json; charset=utf-8"
#: Every value that must never show in a log line or an answer.
SECRETS = (SECRET, TOKEN, AES_KEY, CARD_SECRET)


def make_app(router: dingsync.Router, **kwargs: Any) -> CallbackApp:
    options: dict[str, Any] = {
        "event_token": TOKEN,
        "event_aes_key": AES_KEY,
        "card_secret": CARD_SECRET,
        "clock": lambda: NOW_MS / 1000,
        "endpoints": dingsync.Endpoints(api="http://127.0.0.1:9", oapi="http://127.0.0.1:9"),
    }
    options.update(kwargs)
    return CallbackApp(router, CREDENTIALS, **options)


def robot_body(text: str = "hi", **fields: Any) -> dict[str, Any]:
    body = chatbot_data(
        text,
        session_webhook="http://127.0.0.1:9/robot/sendBySession?session=s",
        session_webhook_expired_time=NOW_MS + 5_400_000,
        create_at=NOW_MS,
    )
    body.update(fields)
    return body


def robot_request(
    body: Union[Mapping[str, Any], bytes, None] = None,
    *,
    timestamp: Optional[str] = None,
    sign: Optional[str] = None,
    secret: str = SECRET,
    content_type: str = JSON,
) -> CallbackRequest:
    timestamp = timestamp if timestamp is not None else str(NOW_MS)
    raw = body if isinstance(body, bytes) else json.dumps(body or robot_body()).encode()
    headers = {"timestamp": timestamp, "sign": sign or reference_robot_sign(timestamp, secret)}
    return CallbackRequest(method="POST", headers=headers, body=raw, content_type=content_type)


def event_request(
    plaintext: Union[Mapping[str, Any], str],
    *,
    token: str = TOKEN,
    aes_key: str = AES_KEY,
    owner: str = CLIENT_ID,
    legacy: bool = False,
    encrypt: Optional[str] = None,
    signature: Optional[str] = None,
    timestamp: str = str(NOW_MS),
    nonce: str = "nonce123",
) -> CallbackRequest:
    message = plaintext if isinstance(plaintext, str) else json.dumps(plaintext)
    encrypt = encrypt or reference_encrypt(aes_key, message, owner, b"0123456789abcdef")
    signature = signature or reference_signature(token, timestamp, nonce, encrypt)
    names = ("signature", "timeStamp") if legacy else ("msg_signature", "timestamp")
    query = {names[0]: signature, names[1]: timestamp, "nonce": nonce}
    body = json.dumps({"encrypt": encrypt}).encode()
    return CallbackRequest(method="POST", query=query, body=body, content_type=JSON)


def card_request(
    body: Union[Mapping[str, Any], bytes], *, secret: str = CARD_SECRET
) -> CallbackRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    query = {"dingsync_card": secret}
    return CallbackRequest(method="POST", query=query, body=raw, content_type=JSON)


def card_body(out_track_id: str = "card-1", **params: Any) -> dict[str, Any]:
    private = {"cardPrivateData": {"actionIds": ["ok"], "params": params}}
    return {"outTrackId": out_track_id, "userId": "u1", "content": json.dumps(private)}
