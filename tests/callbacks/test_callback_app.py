"""CallbackApp without a server: each kind reaches the Router's handler with the Stream
transport's semantics (dedupe, error hook, receipt acks), and bad input never does."""

from __future__ import annotations

import io
import json
import logging
import threading
from typing import Any, Dict, List, Tuple

import pytest
from callback_reference import reference_decrypt, reference_encrypt, reference_signature
from callback_requests import (
    AES_KEY,
    CARD_SECRET,
    CLIENT_ID,
    JSON,
    NOW_MS,
    SECRETS,
    TOKEN,
    card_body,
    card_request,
    event_request,
    make_app,
    robot_body,
    robot_request,
)

import dingsync
from dingsync.callbacks import CallbackAnswer, CallbackApp, CallbackRequest
from dingsync.dedupe import MemoryDedupeStore


class Recorder:
    """A Router whose handlers record what they were given."""

    def __init__(self) -> None:
        self.route = dingsync.Router()
        self.calls: List[Tuple[str, Any, dingsync.Context]] = []
        route = self.route

        @route.chatbot
        def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
            self.calls.append(("chatbot", msg, ctx))
            if msg.text == "fail":
                raise RuntimeError("handler failed on purpose")

        @route.event("user_add_org")
        def on_join(ev: dingsync.Event, ctx: dingsync.Context) -> None:
            self.calls.append(("event", ev, ctx))
            if ev.data.get("fail"):
                raise RuntimeError("event handler failed on purpose")

        @route.card_callback
        def on_click(cb: dingsync.CardCallback, ctx: dingsync.Context) -> dingsync.CardResponse:
            self.calls.append(("card", cb, ctx))
            return dingsync.CardResponse(card_data={"status": f"did {cb.params.get('action')}"})

    @property
    def kinds(self) -> List[str]:
        return [kind for kind, _, _ in self.calls]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def app(rec: Recorder) -> CallbackApp:
    return make_app(rec.route)


def success_of(answer: CallbackAnswer) -> str:
    """The plaintext of an event answer, checked with the reference implementation."""
    assert answer.status == 200, answer.body
    obj = json.loads(answer.body)
    signed = reference_signature(TOKEN, obj["timeStamp"], obj["nonce"], obj["encrypt"])
    assert obj["msg_signature"] == signed
    _, message, owner, _ = reference_decrypt(AES_KEY, obj["encrypt"])
    assert owner == CLIENT_ID
    return message


# -- robot messages ----------------------------------------------------------------------
def test_signed_robot_message_runs_the_chatbot_handler(rec: Recorder, app: CallbackApp) -> None:
    answer = app.handle(robot_request(robot_body("hello there")))
    assert (answer.status, answer.body) == (200, b'{"response":null}')
    ((kind, msg, ctx),) = rec.calls
    assert kind == "chatbot" and msg.text == "hello there"
    assert ctx.message is msg and ctx.frame is not None and not ctx.redelivered
    assert ctx.frame.topic == dingsync.frames.Topic.CHATBOT


def test_robot_message_is_deduplicated_by_msg_id(rec: Recorder, app: CallbackApp) -> None:
    """A replayed request (same timestamp and sign, inside the hour) and a retry with a new
    signature both get the first answer without running the handler again."""
    body = robot_body("once", msgId="msg-42")
    first = app.handle(robot_request(body))
    replay = app.handle(robot_request(body))
    retry = app.handle(robot_request(body, timestamp=str(NOW_MS + 1000)))
    assert first.status == replay.status == retry.status == 200
    assert rec.kinds == ["chatbot"]
    assert app.stats()["duplicates"] == 2


def test_failed_robot_handler_is_a_500_and_the_retry_runs_it_again(
    rec: Recorder, app: CallbackApp
) -> None:
    body = robot_body("fail", msgId="msg-f")
    answer = app.handle(robot_request(body))
    assert answer.status == 500 and answer.body == b"handler failed: RuntimeError"
    assert app.handle(robot_request(body)).status == 500
    assert [ctx.redelivered for _, _, ctx in rec.calls] == [False, True]
    assert app.stats()["handler_errors"] == 2


def test_error_hook_answers_instead_of_the_500(rec: Recorder) -> None:
    @rec.route.error
    def on_error(exc: Exception, ctx: dingsync.Context) -> str:
        return "sorry"

    answer = make_app(rec.route).handle(robot_request(robot_body("fail")))
    assert (answer.status, answer.body) == (200, b'{"response":"sorry"}')


def test_receipt_route_answers_before_the_handler_runs() -> None:
    route = dingsync.Router()
    release, done = threading.Event(), threading.Event()

    @route.chatbot(ack="receipt")
    def slow(msg: dingsync.ChatbotMessage) -> None:
        assert release.wait(5)
        done.set()

    app = make_app(route)
    answer = app.handle(robot_request())
    assert answer.status == 200 and not done.is_set()
    assert app.in_flight == 1  # the handler still runs
    release.set()
    assert app.close(timeout=5) and done.is_set()
    assert app.handle(robot_request()).status == 503  # closed: no new callbacks


def test_chatbot_without_a_handler_is_404() -> None:
    route = dingsync.Router()
    route.event()(lambda ev: None)
    answer = make_app(route).handle(robot_request())
    assert answer.status == 404 and b"no handler" in answer.body


# -- events ------------------------------------------------------------------------------
def test_encrypted_event_runs_the_event_handler(rec: Recorder, app: CallbackApp) -> None:
    plain = {
        "EventType": "user_add_org",
        "EventId": "ev-1",
        "TimeStamp": "1700000000123",
        "CorpId": "dingcorp",
        "userId": ["u1"],
    }
    answer = app.handle(event_request(plain))
    assert success_of(answer) == "success"
    ((kind, ev, ctx),) = rec.calls
    assert kind == "event" and ev.event_type == "user_add_org"
    assert ev.event_id == "ev-1" and ev.corp_id == "dingcorp"
    assert ev.born_at is not None and ev.born_at.year == 2023
    assert dict(ev.data) == {"userId": ["u1"]}  # as the Stream frame carries it
    assert ctx.message_id == "http-ev-1"


def test_check_url_answers_success_without_any_handler(rec: Recorder, app: CallbackApp) -> None:
    assert success_of(app.handle(event_request({"EventType": "check_url"}))) == "success"
    assert rec.calls == []


def test_older_query_spelling_is_accepted(rec: Recorder, app: CallbackApp) -> None:
    request = event_request({"EventType": "user_add_org"}, legacy=True)
    assert "signature" in request.query and "timeStamp" in request.query
    assert success_of(app.handle(request)) == "success"
    assert rec.kinds == ["event"]


def test_event_nobody_handles_is_acknowledged(rec: Recorder, app: CallbackApp) -> None:
    assert success_of(app.handle(event_request({"EventType": "org_dept_create"}))) == "success"
    assert rec.calls == []


def test_failed_event_handler_gets_no_success_so_dingtalk_retries(
    rec: Recorder, app: CallbackApp
) -> None:
    plain = {"EventType": "user_add_org", "fail": True}
    answer = app.handle(event_request(plain))
    assert answer.status == 500 and b"encrypt" not in answer.body
    assert app.handle(event_request(plain)).status == 500
    assert [ctx.redelivered for _, _, ctx in rec.calls] == [False, True]


def test_redelivered_event_is_answered_without_running_again(
    rec: Recorder, app: CallbackApp
) -> None:
    plain = {"EventType": "user_add_org", "TimeStamp": "1700000000000", "userId": ["u9"]}
    assert success_of(app.handle(event_request(plain))) == "success"
    assert success_of(app.handle(event_request(plain, nonce="another1"))) == "success"
    assert rec.kinds == ["event"]


def test_receipt_event_route_answers_first() -> None:
    route = dingsync.Router()
    release, done = threading.Event(), threading.Event()

    @route.event("user_add_org", ack="receipt")
    def slow(ev: dingsync.Event) -> None:
        assert release.wait(5)
        done.set()

    app = make_app(route)
    assert success_of(app.handle(event_request({"EventType": "user_add_org"}))) == "success"
    assert not done.is_set()
    release.set()
    assert app.close(timeout=5) and done.is_set()


def test_an_event_handler_slower_than_dingtalk_waits_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    route = dingsync.Router()
    route.event()(lambda ev: None)
    ticks = iter(range(0, 100, 2))  # each reading of the app's clock is 2 s later
    answer = make_app(route, clock=lambda: NOW_MS / 1000 + next(ticks)).handle(
        event_request({"EventType": "user_add_org"})
    )
    assert success_of(answer) == "success"
    assert any(
        "took 2.0 s" in r.getMessage() and "ack='receipt'" in r.getMessage() for r in caplog.records
    )


def test_chinese_event_text_decrypts(rec: Recorder, app: CallbackApp) -> None:
    plain = {"EventType": "user_add_org", "name": "张三", "dept": "研发部"}
    assert success_of(app.handle(event_request(plain))) == "success"
    assert rec.calls[0][1].data["name"] == "张三"


# -- card clicks -------------------------------------------------------------------------
def test_card_click_answers_with_the_card_response(rec: Recorder, app: CallbackApp) -> None:
    answer = app.handle(card_request(card_body(action="approve")))
    assert answer.status == 200
    assert json.loads(answer.body)["cardData"] == {"cardParamMap": {"status": "did approve"}}
    ((kind, cb, _),) = rec.calls
    assert kind == "card" and cb.out_track_id == "card-1"


def test_card_url_carries_the_secret(app: CallbackApp) -> None:
    assert app.card_url("https://fc.example.com/dt?x=1") == (
        f"https://fc.example.com/dt?x=1&dingsync_card={CARD_SECRET}"
    )


# -- bad input: the right 4xx, never a handler -------------------------------------------
def _tampered(encrypt: str) -> str:
    raw = bytearray(__import__("base64").b64decode(encrypt))
    raw[-17] ^= 0xFF  # the last plaintext byte: the padding breaks
    return __import__("base64").b64encode(bytes(raw)).decode()


GOOD_EVENT = {"EventType": "user_add_org", "userId": ["u1"]}
GOOD_ENCRYPT = reference_encrypt(AES_KEY, json.dumps(GOOD_EVENT), CLIENT_ID, b"0123456789abcdef")


def _padded_wrong(pad: int) -> str:
    import base64
    import struct

    from Crypto.Cipher import AES

    key = base64.b64decode(AES_KEY + "=")
    body = json.dumps(GOOD_EVENT).encode()
    plain = b"r" * 16 + struct.pack(">I", len(body)) + body + CLIENT_ID.encode()
    plain += bytes([pad]) * (32 - len(plain) % 32)  # the pad value does not match its length
    return base64.b64encode(AES.new(key, AES.MODE_CBC, key[:16]).encrypt(plain)).decode()


def _plain_event(message: str) -> CallbackRequest:
    return event_request(message)


BAD: Dict[str, Tuple[CallbackRequest, int, str]] = {
    "GET": (CallbackRequest(method="GET"), 405, "POST"),
    "PUT": (CallbackRequest(method="PUT", content_type=JSON, body=b"{}"), 405, "POST"),
    "form content type": (
        robot_request(content_type="application/x-www-form-urlencoded"),
        415,
        "json",
    ),
    "no content type": (robot_request(content_type=""), 415, "json"),
    "unsigned": (
        CallbackRequest(method="POST", content_type=JSON, body=b"{}"),
        401,
        "not a DingTalk",
    ),
    "robot without sign": (
        CallbackRequest(method="POST", headers={"timestamp": str(NOW_MS)}, content_type=JSON),
        401,
        "without timestamp and sign",
    ),
    "robot wrong sign": (robot_request(secret="not-the-secret"), 401, "sign does not match"),
    "robot url-encoded sign": (
        robot_request(sign="DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA%3D"),
        401,
        "sign does not match",
    ),
    "robot stale timestamp": (
        robot_request(timestamp=str(NOW_MS - 3_600_001)),
        401,
        "away from now",
    ),
    "robot future timestamp": (
        robot_request(timestamp=str(NOW_MS + 3_600_001)),
        401,
        "away from now",
    ),
    "robot non-JSON": (robot_request(b"hello"), 400, "not a JSON object"),
    "robot JSON array": (robot_request(b"[1, 2]"), 400, "not a JSON object"),
    "robot not UTF-8": (robot_request(b'{"msgId": "\xff"}'), 400, "not UTF-8"),
    "robot without msgId": (robot_request(b'{"text": {"content": "x"}}'), 400, "msgId"),
    "event wrong signature": (event_request(GOOD_EVENT, signature="0" * 40), 401, "msg_signature"),
    "event wrong token": (event_request(GOOD_EVENT, token="other-token"), 401, "msg_signature"),
    "event tampered ciphertext": (
        event_request(
            GOOD_EVENT,
            encrypt=_tampered(GOOD_ENCRYPT),
            signature=reference_signature(TOKEN, str(NOW_MS), "nonce123", GOOD_ENCRYPT),
        ),
        401,
        "msg_signature",
    ),
    "event tampered and re-signed": (
        event_request(GOOD_EVENT, encrypt=_tampered(GOOD_ENCRYPT)),
        400,
        "does not decrypt",
    ),
    "event wrong owner key": (
        event_request(GOOD_EVENT, owner="dingsomeoneelse"),
        403,
        "another app",
    ),
    "event wrong aes key": (
        event_request(GOOD_EVENT, aes_key="A" * 43),
        400,
        "does not decrypt",
    ),
    "event bad padding": (event_request(GOOD_EVENT, encrypt=_padded_wrong(33)), 400, "padding"),
    "event missing nonce": (
        CallbackRequest(
            method="POST", query={"msg_signature": "x", "timestamp": "1"}, content_type=JSON
        ),
        400,
        "nonce",
    ),
    "event body without encrypt": (
        CallbackRequest(
            method="POST",
            query={"msg_signature": "x", "timestamp": "1", "nonce": "n"},
            body=b'{"data": 1}',
            content_type=JSON,
        ),
        400,
        "no encrypt",
    ),
    "event body non-JSON": (
        CallbackRequest(
            method="POST",
            query={"msg_signature": "x", "timestamp": "1", "nonce": "n"},
            body=b"encrypt=abc",
            content_type=JSON,
        ),
        400,
        "not a JSON object",
    ),
    "event plaintext non-JSON": (_plain_event("not json"), 400, "event is not a JSON object"),
    "event without EventType": (_plain_event('{"userId": 1}'), 400, "EventType"),
    "card wrong secret": (card_request(card_body(), secret="guess-guess-guess"), 401, "card"),
    "card non-JSON": (card_request(b"<xml/>"), 400, "not a JSON object"),
    "card without outTrackId": (card_request({"userId": "u1"}), 400, "malformed payload"),
    "oversized body": (robot_request(b"{" + b" " * (300 * 1024) + b"}"), 413, "larger than"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_gets_its_4xx_and_never_a_handler(
    name: str, rec: Recorder, app: CallbackApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    request, status, reason = BAD[name]
    answer = app.handle(request)
    assert answer.status == status, answer.body
    assert reason in answer.body.decode(), answer.body
    assert b"\n" not in answer.body  # one line
    assert rec.calls == []
    assert app.stats()["rejected"] == 1
    shown = answer.body.decode() + "\n".join(r.getMessage() for r in caplog.records)
    signs = [request.headers["sign"]] if len(request.headers.get("sign", "")) > 8 else []
    for secret in (*SECRETS, *signs):
        assert secret not in shown


def test_events_are_refused_when_not_configured(rec: Recorder) -> None:
    app = make_app(rec.route, event_token=None, event_aes_key=None)
    answer = app.handle(event_request(GOOD_EVENT))
    assert answer.status == 403 and b"not configured" in answer.body
    assert rec.calls == []


def test_card_clicks_are_refused_without_a_card_secret(rec: Recorder) -> None:
    answer = make_app(rec.route, card_secret=None).handle(card_request(card_body()))
    assert answer.status == 401 and rec.calls == []


def test_half_configured_events_are_a_configuration_error(rec: Recorder) -> None:
    with pytest.raises(dingsync.ConfigurationError, match="both event_token and event_aes_key"):
        make_app(rec.route, event_aes_key=None)


def test_short_card_secret_is_a_configuration_error(rec: Recorder) -> None:
    with pytest.raises(dingsync.ConfigurationError, match="at least 16"):
        make_app(rec.route, card_secret="short")


def test_duplicate_in_progress_elsewhere_is_409(rec: Recorder) -> None:
    store = MemoryDedupeStore()
    store.claim(f"{CLIENT_ID}:msg:msg-busy")  # another instance is running it
    answer = make_app(rec.route, dedupe=store).handle(robot_request(robot_body(msgId="msg-busy")))
    assert answer.status == 409 and rec.calls == []


# -- WSGI --------------------------------------------------------------------------------
def _environ(request: CallbackRequest, **extra: Any) -> Dict[str, Any]:
    environ: Dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": "&".join(f"{k}={v}" for k, v in request.query.items()),
        "CONTENT_TYPE": request.content_type,
        "CONTENT_LENGTH": str(len(request.body)),
        "wsgi.input": io.BytesIO(request.body),
        "PATH_INFO": "/",
        "SCRIPT_NAME": "",
    }
    environ.update({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in request.headers.items()})
    environ.update(extra)
    return environ


def test_wsgi_call_on_a_sub_path(rec: Recorder, app: CallbackApp) -> None:
    started: List[Any] = []
    body = app(
        _environ(robot_request(), SCRIPT_NAME="/dingtalk", PATH_INFO="/any/where"),
        lambda status, headers: started.append((status, headers)),
    )
    assert started == [
        ("200 OK", [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", "17")])
    ]
    assert b"".join(body) == b'{"response":null}' and rec.kinds == ["chatbot"]


def test_wsgi_refuses_a_large_content_length_without_reading_it(
    rec: Recorder, app: CallbackApp
) -> None:
    class Unreadable(io.BytesIO):
        def read(self, *args: Any) -> bytes:
            raise AssertionError("the body must not be read")

    environ = _environ(robot_request(), CONTENT_LENGTH=str(10**9), **{"wsgi.input": Unreadable()})
    started: List[str] = []
    app(environ, lambda status, headers: started.append(status))
    assert [s[:4] for s in started] == ["413 "] and rec.calls == []


def test_wsgi_chunked_body_over_the_limit_is_413(rec: Recorder) -> None:
    app = make_app(rec.route, max_body=1000)
    environ = _environ(robot_request(b"{" + b" " * 2000 + b"}"), CONTENT_LENGTH="")
    assert app.handle_environ(environ).status == 413


# -- a shared dedupe store ----------------------------------------------------------------
def test_two_instances_share_the_redis_dedupe_store(rec: Recorder, redis_client: Any) -> None:
    """Two function instances behind one URL: a retry that lands on the other instance is
    answered from the shared store, not run again."""
    first = make_app(rec.route, dedupe=dingsync.RedisDedupeStore(redis_client, ttl=60))
    second = make_app(rec.route, dedupe=dingsync.RedisDedupeStore(redis_client, ttl=60))
    body = robot_body("only once", msgId="msg-shared")
    assert first.handle(robot_request(body)).status == 200
    assert second.handle(robot_request(body, timestamp=str(NOW_MS + 5))).status == 200
    assert rec.kinds == ["chatbot"]
