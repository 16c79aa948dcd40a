"""Arbitrary requests against a fully configured CallbackApp: never a 5xx, never a handler,
never a secret in the answer or the log."""

from __future__ import annotations

import io
import logging
from typing import Any, Dict, List
from urllib.parse import urlencode

from callback_requests import SECRETS, make_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dingsync

QUERY_NAMES = ["msg_signature", "signature", "timestamp", "timeStamp", "nonce", "dingsync_card"]
HEADER_NAMES = ["timestamp", "sign", "content-type", "x-anything"]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain", ""]

names = st.one_of(st.sampled_from(QUERY_NAMES), st.text(min_size=1, max_size=8))
values = st.one_of(
    st.text(max_size=64),
    st.from_regex(r"[0-9]{1,16}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9+/]{0,88}={0,2}", fullmatch=True),
)
bodies = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=512).map(str.encode),
    st.dictionaries(st.sampled_from(["encrypt", "msgId", "outTrackId", "x"]), values).map(
        lambda d: __import__("json").dumps(d).encode()
    ),
)


def _router(ran: List[str]) -> dingsync.Router:
    route = dingsync.Router()
    route.chatbot(lambda msg, ctx: ran.append("chatbot"))
    route.card_callback(lambda cb, ctx: ran.append("card"))
    route.event()(lambda ev, ctx: ran.append("event"))
    return route


RAN: List[str] = []
APP = make_app(_router(RAN), max_body=1024)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE"]),
    query=st.dictionaries(names, values, max_size=6),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), values, max_size=4),
    content_type=st.sampled_from(CONTENT_TYPES),
    body=bodies,
)
def test_arbitrary_requests_never_run_a_handler_nor_leak(
    method: str, query: Dict[str, str], headers: Dict[str, str], content_type: str, body: bytes
) -> None:
    ran = RAN
    ran.clear()
    environ: Dict[str, Any] = {
        "REQUEST_METHOD": method,
        "QUERY_STRING": urlencode(query),
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    capture = _Capture()
    logger = logging.getLogger("dingsync")
    logger.addHandler(capture)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        started: List[str] = []
        answer = b"".join(APP(environ, lambda status, hdrs: started.append(status)))
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous)
    (status,) = started
    assert 400 <= int(status[:3]) < 500, (status, answer)
    assert ran == []
    shown = answer.decode("utf-8", "replace") + "\n".join(capture.lines)
    for secret in SECRETS:
        assert secret not in shown
