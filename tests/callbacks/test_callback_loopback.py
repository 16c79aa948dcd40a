"""The emulator delivers over HTTP to a CallbackApp served by waitress on loopback: signed
robot messages, encrypted events and card clicks reach the handlers, replies land, and the
emulator checks every answer as DingTalk would."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List

import pytest
from callback_reference import reference_decrypt, reference_robot_sign, reference_signature

import dingsync
from dingsync.callbacks import CallbackApp
from dingsync.testing import FakeDingTalk
from dingworker.http import HttpServer

WSGI = Callable[[Dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@pytest.fixture
def serve() -> Iterator[Callable[[WSGI], str]]:
    """Serve a WSGI app with waitress on 127.0.0.1; returns its URL."""
    servers: List[HttpServer] = []

    def start(app: WSGI) -> str:
        server = HttpServer(app, "127.0.0.1", 0, threads=4).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}/"

    yield start
    for server in servers:
        server.stop()


def app_for(fake: FakeDingTalk, route: dingsync.Router, **kwargs: Any) -> CallbackApp:
    return CallbackApp(
        route,
        fake.credentials,
        endpoints=fake.endpoints,
        event_token=fake.event_token,
        event_aes_key=fake.event_aes_key,
        card_secret="card-secret-for-tests-0001",
        **kwargs,
    )


def test_robot_message_over_http_runs_the_handler_and_the_reply_lands(
    fake: FakeDingTalk, serve: Callable[[WSGI], str]
) -> None:
    route = dingsync.Router()

    @route.chatbot
    def echo(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        ctx.reply_text(f"echo: {msg.text}")

    fake.register_callback_url(serve(app_for(fake, route)))
    mid = fake.push_chatbot("你好 over HTTP", conversation_type="2")
    delivery = fake.wait_for_delivery(mid)
    assert delivery.ok and delivery.status == 200 and delivery.kind == "chatbot"
    reply = fake.wait_for_reply(predicate=lambda r: r.message_id == mid)
    assert reply.text == "echo: 你好 over HTTP"
    assert fake.violations == [] and fake.pushes == []  # nothing went over the websocket


def test_reply_falls_back_to_the_openapi_when_the_session_webhook_expired(
    fake: FakeDingTalk, serve: Callable[[WSGI], str]
) -> None:
    """The same reply fallback as in Stream mode: ctx.api (made on first use) sends it."""
    route = dingsync.Router()

    @route.chatbot
    def late(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        fake.expire_session(msg.msg_id)
        ctx.reply_text("through the OpenAPI")

    fake.register_callback_url(serve(app_for(fake, route)))
    assert fake.wait_for_delivery(fake.push_chatbot("late", conversation_type="2")).ok
    (sent,) = fake.sent
    assert "through the OpenAPI" in json.dumps(sent.msg_param, ensure_ascii=False)
    assert fake.replies == []


def test_encrypted_event_over_http_runs_the_handler_and_answers_success(
    fake: FakeDingTalk, serve: Callable[[WSGI], str]
) -> None:
    route = dingsync.Router()
    seen: List[dingsync.Event] = []
    route.event("user_add_org")(lambda ev, ctx: seen.append(ev))
    fake.register_callback_url(serve(app_for(fake, route)))
    delivery = fake.wait_for_delivery(fake.push_event("user_add_org", {"userId": ["u1", "张三"]}))
    assert delivery.ok and delivery.latency is not None and delivery.latency < 1.5
    ((event,),) = [seen]
    assert event.event_type == "user_add_org" and dict(event.data) == {"userId": ["u1", "张三"]}
    assert event.corp_id == fake.corp_id
    # The answer the emulator accepted is the encrypted "success" by the reference too.
    answer = json.loads(delivery.answer)
    signed = reference_signature(
        fake.event_token, answer["timeStamp"], answer["nonce"], answer["encrypt"]
    )
    assert answer["msg_signature"] == signed
    assert reference_decrypt(fake.event_aes_key, answer["encrypt"])[1:3] == (
        "success",
        fake.client_id,
    )
    assert fake.violations == []


def test_older_event_query_spelling_over_http(
    fake: FakeDingTalk, serve: Callable[[WSGI], str]
) -> None:
    route = dingsync.Router()
    seen: List[str] = []
    route.event()(lambda ev: seen.append(ev.event_type))
    fake.register_callback_url(serve(app_for(fake, route)))
    fake.event_legacy_query = True
    assert fake.wait_for_delivery(fake.push_event("chat_update_title", {"title": "x"})).ok
    assert seen == ["chat_update_title"]


def test_card_click_over_http_updates_the_card(
    fake: FakeDingTalk, serve: Callable[[WSGI], str]
) -> None:
    route = dingsync.Router()

    @route.card_callback
    def on_click(cb: dingsync.CardCallback, ctx: dingsync.Context) -> dingsync.CardResponse:
        return dingsync.CardResponse(card_data={"status": f"approved by {cb.user_id}"})

    app = app_for(fake, route)
    url = serve(app)
    api = dingsync.ApiClient(fake.credentials, endpoints=fake.endpoints)
    api.cards.register_callback("orders", app.card_url(url), "api-secret-1")
    api.cards.create(
        "tpl.schema",
        "order-42",
        {"status": "new"},
        callback_type="HTTP",
        callback_route_key="orders",
    )
    delivery = fake.wait_for_delivery(fake.push_card_callback("order-42", {"a": 1}, user_id="u7"))
    assert delivery.ok and delivery.kind == "card"
    assert fake.cards["order-42"].card_data == {"status": "approved by u7"}
    assert fake.violations == []


def test_card_of_a_stream_card_stays_on_the_websocket(fake: FakeDingTalk) -> None:
    fake.register_card_callback("orders", "http://127.0.0.1:9/", "s")
    api = dingsync.ApiClient(fake.credentials, endpoints=fake.endpoints)
    api.cards.create("tpl.schema", "stream-card", {"status": "new"})
    mid = fake.push_card_callback("stream-card", {"a": 1})
    assert [p.message_id for p in fake.pending] == [mid] and fake.http_deliveries == []


def test_register_callback_route_errors(fake: FakeDingTalk) -> None:
    api = dingsync.ApiClient(fake.credentials, endpoints=fake.endpoints)
    api.cards.register_callback("k", "http://127.0.0.1:9/a", "s")
    with pytest.raises(dingsync.ApiError, match="forceUpdate"):
        api.cards.register_callback("k", "http://127.0.0.1:9/b", "s")
    api.cards.register_callback("k", "http://127.0.0.1:9/b", "s", force_update=True)
    assert fake.card_callback_url("k") == "http://127.0.0.1:9/b"
    with pytest.raises(dingsync.ConfigurationError):
        api.cards.register_callback("k", "ftp://x", "s")


def test_failed_event_is_retried_and_the_retry_is_marked_redelivered(
    fake: FakeDingTalk, serve: Callable[[WSGI], str]
) -> None:
    route = dingsync.Router()
    attempts: List[bool] = []

    @route.event("user_add_org")
    def flaky(ev: dingsync.Event, ctx: dingsync.Context) -> None:
        attempts.append(ctx.redelivered)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    fake.register_callback_url(serve(app_for(fake, route)))
    fake.redeliver_events_after = 0.05
    delivery = fake.wait_for_delivery(fake.push_event("user_add_org", {"userId": ["u1"]}))
    assert delivery.ok and delivery.attempts == 2
    assert attempts == [False, True]
    assert [r.message_id for r in fake.redeliveries] == [delivery.message_id]


def test_unanswered_robot_message_is_retried_and_runs_once(
    fake: FakeDingTalk, serve: Callable[[WSGI], str]
) -> None:
    """The first answer comes after the emulator gave up: it delivers again, as DingTalk
    does, and the app's dedupe keeps the handler to one run."""
    route = dingsync.Router()
    seen: List[str] = []
    route.chatbot(lambda msg: seen.append(msg.text))
    app = app_for(fake, route)
    calls: List[int] = []

    def late_first(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        calls.append(1)
        answer = app(environ, start_response)
        if len(calls) == 1:
            time.sleep(0.5)  # handled, but answered after the emulator's http_timeout below
        return answer

    fake.register_callback_url(serve(late_first))
    fake.http_timeout = 0.1
    fake.redeliver_callbacks_after = 0.05
    delivery = fake.wait_for_delivery(fake.push_chatbot("are you there"))
    assert delivery.ok and delivery.attempts == 2
    assert [r.message_id for r in fake.redeliveries] == [delivery.message_id]
    assert seen == ["are you there"] and app.stats()["duplicates"] == 1


def test_wrong_event_answers_are_violations(
    fake: FakeDingTalk, serve: Callable[[WSGI], str]
) -> None:
    def plain_ok(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"errcode": 0}']

    fake.register_callback_url(serve(plain_ok))
    delivery = fake.wait_for_delivery(fake.push_event("user_add_org", {}))
    assert delivery.state == "failed" and "lacks msg_signature" in (delivery.problem or "")
    assert any("lacks msg_signature" in v for v in fake.violations)


def test_an_event_answered_after_the_deadline_is_a_violation(
    fake: FakeDingTalk, serve: Callable[[WSGI], str]
) -> None:
    route = dingsync.Router()
    route.event()(lambda ev: time.sleep(0.1))
    fake.register_callback_url(serve(app_for(fake, route)))
    fake.event_answer_timeout = 0.05  # DingTalk's 1500 ms, shrunk for the test
    delivery = fake.wait_for_delivery(fake.push_event("user_add_org", {}))
    assert delivery.state == "failed" and "answered after" in (delivery.problem or "")
    assert any("answered after" in v for v in fake.violations)


def test_http_delay_holds_each_post_back(fake: FakeDingTalk, serve: Callable[[WSGI], str]) -> None:
    route = dingsync.Router()
    route.chatbot(lambda msg: None)
    fake.register_callback_url(serve(app_for(fake, route)))
    fake.http_delay = 0.2
    started = time.monotonic()
    assert fake.wait_for_delivery(fake.push_chatbot("slowly")).ok
    assert time.monotonic() - started >= 0.2


def test_emulator_requests_verify_with_the_reference_implementation(
    fake: FakeDingTalk, serve: Callable[[WSGI], str]
) -> None:
    """Conformance: what the emulator POSTs checks out with the independent implementation."""
    seen: List[Dict[str, Any]] = []
    lock = threading.Lock()

    def recorder(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        with lock:
            seen.append({"environ": dict(environ), "body": body})
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    fake.register_callback_url(serve(recorder))
    fake.wait_for_delivery(fake.push_chatbot("signed"))
    fake.wait_for_delivery(fake.push_event("user_add_org", {"name": "李四"}))
    robot, event = seen
    ts = robot["environ"]["HTTP_TIMESTAMP"]
    assert robot["environ"]["HTTP_SIGN"] == reference_robot_sign(ts, fake.client_secret)
    assert robot["environ"]["CONTENT_TYPE"] == "application/json; charset=utf-8"
    assert json.loads(robot["body"])["text"]["content"] == "signed"
    query = dict(p.split("=", 1) for p in event["environ"]["QUERY_STRING"].split("&"))
    encrypt = json.loads(event["body"])["encrypt"]
    assert query["msg_signature"] == reference_signature(
        fake.event_token, query["timestamp"], query["nonce"], encrypt
    )
    _, plain, owner, _ = reference_decrypt(fake.event_aes_key, encrypt)
    assert owner == fake.client_id
    assert json.loads(plain)["EventType"] == "user_add_org"
    assert json.loads(plain)["name"] == "李四"
