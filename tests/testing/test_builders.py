"""Testing handlers offline (issue 15, item 6): the builders of dingsync.testing and
Context.for_testing(), with no emulator and no network."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Dict, List

import pytest

import dingsync
from dingsync.errors import SessionExpired
from dingsync.testing import (
    callback_frame,
    card_callback,
    card_callback_frame,
    chatbot_frame,
    chatbot_message,
    event,
    event_frame,
    payloads,
)


def calculator() -> dingsync.Router:
    route = dingsync.Router()

    @route.chatbot
    def add(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        left, right = msg.text.split("+")
        ctx.reply_text(str(int(left) + int(right)), at_sender=msg.is_group)

    return route


def test_dispatch_a_built_frame_and_read_the_recorded_reply() -> None:
    ctx = dingsync.Context.for_testing()
    ack = calculator().dispatch(chatbot_frame("1+2"), ctx)
    assert ack.code == 200
    assert ctx.replies == [{"msgtype": "text", "text": {"content": "3"}}]


def test_group_messages_carry_the_group_fields() -> None:
    ctx = dingsync.Context.for_testing()
    frame = chatbot_frame("2+2", group=True, sender_staff_id="u9", conversation_id="cidG==")
    calculator().dispatch(frame, ctx)
    assert ctx.replies[0]["at"]["atUserIds"] == ["u9"]
    assert chatbot_message("x", group=True, conversation_id="cidG==").conversation_id == "cidG=="


def test_a_message_without_session_webhook_is_recorded_by_a_testing_context() -> None:
    """The raw payload builders make messages without a sessionWebhook; a testing context
    still records the reply instead of failing with SessionExpired."""
    frame = dingsync.Frame.from_dict(
        payloads.frame("CALLBACK", payloads.CHATBOT_TOPIC, payloads.chatbot_data("1+1"))
    )
    ctx = dingsync.Context.for_testing()
    assert calculator().dispatch(frame, ctx).code == 200
    assert ctx.replies[0]["text"] == {"content": "2"}


def test_outside_testing_a_missing_webhook_is_named_as_such() -> None:
    msg = dingsync.ChatbotMessage.from_wire(payloads.chatbot_data("hi"))
    with pytest.raises(SessionExpired) as info:
        dingsync.Context(message=msg).reply_text("hello")
    assert "no sessionWebhook" in str(info.value) and "Context.for_testing()" in str(info.value)
    assert "has expired" not in str(info.value)


def test_an_expired_webhook_still_behaves_as_in_production() -> None:
    msg = chatbot_message("hi", create_at=0, session_webhook_expired_time=1)
    with pytest.raises(SessionExpired, match="has expired"):
        dingsync.Context.for_testing(msg).reply_text("late")


def test_event_card_and_raw_callback_builders() -> None:
    route = dingsync.Router()
    seen: List[Any] = []

    @route.event("user_add_org")
    def joined(ev: dingsync.Event, ctx: dingsync.Context) -> None:
        seen.append((ev.event_type, ev.data))

    @route.card_callback
    def clicked(cb: dingsync.CardCallback, ctx: dingsync.Context) -> dingsync.CardResponse:
        return dingsync.CardResponse(card_data={"choice": cb.params["choice"]})

    @route.callback("/v1.0/graph/api/invoke")
    def graph(data: Any, ctx: dingsync.Context) -> None:
        seen.append(data)

    ctx = dingsync.Context.for_testing()
    assert route.dispatch(event_frame("user_add_org", {"userId": ["u1"]}), ctx).code == 200
    card_ack = route.dispatch(card_callback_frame("order-1", {"choice": "yes"}), ctx)
    assert '"choice"' in card_ack.data and "yes" in card_ack.data
    route.dispatch(callback_frame("/v1.0/graph/api/invoke", {"k": 1}), ctx)
    assert seen == [("user_add_org", {"userId": ["u1"]}), {"k": 1}]
    assert event("user_add_org").event_type == "user_add_org"
    assert card_callback("order-1", {"choice": "no"}).out_track_id == "order-1"


def test_builders_need_neither_the_testing_extra_nor_a_network() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["websockets"] = None  # as if the testing extra were not installed
        import dingsync
        from dingsync.testing import chatbot_frame
        route = dingsync.Router()
        route.chatbot(lambda msg, ctx: ctx.reply_text(msg.text.upper()))
        ctx = dingsync.Context.for_testing()
        route.dispatch(chatbot_frame("hi"), ctx)
        print(ctx.replies[0]["text"]["content"])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "HI"


def test_readme_offline_example_runs_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's `test_bot_offline.py`, against its quickstart `bot.py`."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = {b.split("\n", 1)[0]: b for b in re.findall(r"```python\n(.*?)```", readme, re.S)}
    bot = types.ModuleType("bot")
    exec(compile(blocks["# bot.py"], "README:bot.py", "exec"), bot.__dict__)  # noqa: S102
    monkeypatch.setitem(sys.modules, "bot", bot)
    namespace: Dict[str, Any] = {}
    source = blocks["# test_bot_offline.py"]
    exec(compile(source, "README:test_bot_offline.py", "exec"), namespace)  # noqa: S102
    tests = [name for name in namespace if name.startswith("test_")]
    assert len(tests) == 2
    for name in tests:
        namespace[name]()
