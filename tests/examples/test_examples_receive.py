"""The examples: each Router driven by a StreamClient against the emulator, plus the calculator's
evaluator on its own (including input meant to break out of it)."""

from __future__ import annotations

import importlib
import logging
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import List

import pytest

import dingsync
from dingsync.testing import FakeDingTalk
from dingsync.testing.payloads import chatbot_data

REPO = Path(__file__).resolve().parents[2]


def load(name: str) -> ModuleType:
    """Import ``examples.<name>`` from the repository (it is not an installed package)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module(f"examples.{name}")


calc = load("calc")
echo = load("echo")
cards = load("cards")
events = load("events")


def run_client(fake: FakeDingTalk, router: dingsync.Router) -> dingsync.StreamClient:
    client = dingsync.StreamClient(
        fake.credentials,
        router,
        endpoints=fake.endpoints,
        api=dingsync.ApiClient(fake.credentials, endpoints=fake.endpoints),
    )
    client.start()
    fake.wait_for_connections(1)
    return client


def ask(fake: FakeDingTalk, text: str, **kwargs: object) -> str:
    message_id = fake.push_chatbot(text, **kwargs)  # type: ignore[arg-type]
    assert fake.wait_for_ack(message_id)["code"] == 200
    reply = fake.wait_for_reply(predicate=lambda r: r.message_id == message_id)
    assert reply.text is not None
    return reply.text


def hand_made(text: str) -> dingsync.ChatbotMessage:
    return dingsync.ChatbotMessage.from_wire(
        chatbot_data(text, session_webhook="https://x.invalid/robot/sendBySession?session=s")
    )


# -- every example is a Router the worker can load ---------------------------------------------


@pytest.mark.parametrize("name", ["calc", "echo", "cards", "events"])
def test_example_exposes_a_router_named_route(name: str) -> None:
    """``dingworker examples.<name>:route`` finds a Router, and the docstring says so."""
    module = load(name)
    assert isinstance(module.route, dingsync.Router)
    assert f"dingworker examples.{name}:route" in (module.__doc__ or "")


# -- calc: over the wire ------------------------------------------------------------------------


def test_calc_bot_answers_over_the_stream(fake: FakeDingTalk) -> None:
    """The seed's conversation: 1+1 -> 2, and more."""
    client = run_client(fake, calc.route)
    try:
        assert ask(fake, "1+1") == "2"
        assert ask(fake, " 2*(3+4)", conversation_type="2") == "14"
        assert ask(fake, "hello") == calc.HELP
        assert ask(fake, "1/0") == "Error: division by zero"
    finally:
        client.stop(timeout=5)


# -- calc: the evaluator ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1+1", 2),
        ("2*(3+4)", 14),
        ("7/2", 3.5),
        ("7//2", 3),
        ("7 % 3", 1),
        ("2**10", 1024),
        ("-3 + +4", 1),
        ("-2**2", -4),
        ("(1.5 + 0.5) * 4", 8.0),
        ("１＋２", 3),
        ("1+1=", 2),
        ("1_000 * 3", 3000),
    ],
)
def test_evaluate_arithmetic(text: str, expected: float) -> None:
    """Numbers, the seven operators, unary signs, parentheses; full-width input normalised."""
    assert calc.evaluate(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('echo pwned')",
        "__import__('os')",
        "open('/etc/passwd').read()",
        "().__class__.__bases__[0].__subclasses__()",
        "(1).__class__",
        "x",
        "x + 1",
        "print(1)",
        "lambda: 1",
        "[1, 2]",
        "{'a': 1}",
        "'a' * 3",
        "True + 1",
        "1j * 2",
        "1 if 1 else 2",
        "1 < 2",
        "1 and 2",
        "1; 2",
        "import os",
        "(x := 1)",
        "f'{1}'",
        "1 << 10000",
        "~1",
        "",
        "1 +",
    ],
)
def test_evaluate_refuses_everything_else(text: str) -> None:
    """Names, calls, attributes, containers, strings, bools, complex, statements: refused."""
    with pytest.raises(calc.CalcError):
        calc.evaluate(text)


@pytest.mark.parametrize(
    "text",
    [
        "9**9**9",
        "9**999999999",
        "2**5000",
        "(2**4000)*(2**4000)",
        "10**4000 // 1",
        "2.5**1e10",
        "1e308*10",
        "(2**4000)/3",
        "(-8)**0.5",
    ],
)
def test_evaluate_refuses_huge_or_unreal_results_quickly(text: str) -> None:
    """Huge powers are refused before they are computed; overflow and complex results too."""
    started = time.perf_counter()
    with pytest.raises(calc.CalcError):
        calc.evaluate(text)
    assert time.perf_counter() - started < 0.1


def test_evaluate_limits_length_and_nesting() -> None:
    """Long input and deep nesting are refused (no RecursionError, no parser blow-up)."""
    with pytest.raises(calc.CalcError, match="longer than"):
        calc.evaluate("1+" * 150 + "1")
    with pytest.raises(calc.CalcError, match="nested too deeply"):
        calc.evaluate("-" * 100 + "1")
    with pytest.raises(calc.CalcError):
        calc.evaluate("(" * 99 + "1" + ")" * 99 + "+" + "(" * 100)
    assert calc.evaluate("(" * 90 + "1" + ")" * 90) == 1  # parentheses alone are not depth


def test_evaluate_never_calls_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluator works with eval and exec gone from builtins."""
    import builtins

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("eval/exec must not be used")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert calc.evaluate("6*7") == 42


def test_answer_texts() -> None:
    """answer(): result, 'Error: ...' for broken arithmetic, help for words."""
    assert calc.answer("0.1+0.2") == "0.3"
    assert calc.answer("4/2") == "2"
    assert calc.answer("2**") == "Error: that is not an arithmetic expression"
    assert calc.answer("what is this") == calc.HELP
    assert calc.answer("__import__('os')") == calc.HELP
    assert calc.answer("9**9**9") == "Error: that number would be too large"


def test_calc_handler_with_a_hand_made_context() -> None:
    """The handler is a plain function: call it with Context.for_testing, no socket."""
    msg = hand_made("6*7")
    ctx = dingsync.Context.for_testing(msg)
    calc.on_message(msg, ctx)
    assert ctx.replies == [{"msgtype": "text", "text": {"content": "42"}}]


# -- echo -------------------------------------------------------------------------------------


def test_echo_bot_over_the_stream(fake: FakeDingTalk) -> None:
    """1:1 text is echoed as is; in a group the sender is named; non-text is explained."""
    client = run_client(fake, echo.route)
    try:
        assert ask(fake, "hello there") == "hello there"
        assert (
            ask(fake, " hi all", conversation_type="2", sender_nick="Alice") == "Alice said: hi all"
        )
        assert ask(fake, "", msgtype="picture") == "I got a picture message but can only echo text."
    finally:
        client.stop(timeout=5)


# -- cards ------------------------------------------------------------------------------------


def test_cards_bot_posts_a_card_and_callbacks_update_it(fake: FakeDingTalk) -> None:
    """A message creates a card via api.cards; each vote's CardResponse updates it."""
    client = run_client(fake, cards.route)
    try:
        message_id = fake.push_chatbot("lunch at noon?", sender_staff_id="alice")
        assert fake.wait_for_ack(message_id)["code"] == 200
        fake.wait_until(lambda: len(fake.cards) == 1)
        out_track_id, card = next(iter(fake.cards.items()))
        assert card.card_data["question"] == "lunch at noon?"

        for user, vote in (("bob", "yes"), ("carol", "yes"), ("dave", "no")):
            mid = fake.push_card_callback(out_track_id, {"vote": vote}, user_id=user)
            assert fake.wait_for_ack(mid)["code"] == 200
        assert card.card_data["yes"] == "2" and card.card_data["no"] == "1"
        assert card.card_data["status"] == "dave voted no"
    finally:
        client.stop(timeout=5)


def test_cards_callback_ignores_unknown_votes() -> None:
    """An unexpected button answers an empty CardResponse (no change)."""
    callback = dingsync.CardCallback(
        out_track_id="t", user_id="u", content={"cardPrivateData": {"params": {"vote": "maybe"}}}
    )
    response = cards.on_vote(callback, dingsync.Context.for_testing(callback))
    assert response == dingsync.CardResponse()


def test_cards_without_api_says_so() -> None:
    """Without an ApiClient the bot explains instead of failing."""
    msg = hand_made("vote?")
    ctx = dingsync.Context.for_testing(msg)
    cards.on_message(msg, ctx)
    assert "OpenAPI" in ctx.replies[0]["text"]["content"]


# -- events -----------------------------------------------------------------------------------


def test_events_bot_logs_and_acks(fake: FakeDingTalk, caplog: pytest.LogCaptureFixture) -> None:
    """Specific and catch-all event handlers both log, with the message id, and ack SUCCESS."""
    client = run_client(fake, events.route)
    try:
        with caplog.at_level(logging.INFO, logger="dingsync.handler"):
            joined = fake.push_event("user_add_org", {"userId": ["u1", "u2"]})
            renamed = fake.push_event("chat_update_title", {"chatId": "c1", "title": "new"})
            acks = [fake.wait_for_ack(joined), fake.wait_for_ack(renamed)]
    finally:
        client.stop(timeout=5)
    for ack in acks:
        assert ack["code"] == 200
        assert '"SUCCESS"' in ack["data"]
    messages: List[str] = [r.getMessage() for r in caplog.records if r.name == "dingsync.handler"]
    assert "welcome, u1" in messages and "welcome, u2" in messages
    assert "event chat_update_title: chatId=c1 title=new" in messages
    ids = {getattr(r, "message_id", None) for r in caplog.records if r.name == "dingsync.handler"}
    assert {joined, renamed} <= ids
