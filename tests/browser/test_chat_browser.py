"""The chat window in a real browser: what a bot author sees and clicks."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest

import dingsync
from benchmarks.chromium import running_bot
from dingsync import messages as m
from dingsync.api.cards import robot_space
from dingsync.testing.transcripts import replay_transcript
from examples import calc, cards

try:
    from playwright.sync_api import expect
except ImportError:
    if __import__("os").environ.get("DINGSYNC_REQUIRE_BROWSER"):
        raise
    pytest.skip("browser tests skipped: Playwright is not installed", allow_module_level=True)


def send(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def bot_bubbles(page: Any) -> Any:
    return page.locator(".msg.bot .bubble")


def test_calc_bot_answers_1_plus_1_with_a_2_bubble(page: Any) -> None:
    """The calculator bot's reply to "1+1" shows as a bot bubble reading "2", and the user's
    message is marked acked."""
    with running_bot(calc.route) as (fake, _):
        page.goto(fake.api_base + "/")
        expect(page.locator("#conn")).to_contain_text("connected")
        send(page, "1+1")
        expect(bot_bubbles(page)).to_have_text(["2"])
        expect(page.locator(".msg.mine .bubble")).to_have_text(["1+1"])
        expect(page.locator(".msg.mine .note")).to_contain_text("acked")
        expect(page.locator("#inspector li.ack")).to_have_count(1)


def test_card_button_click_updates_the_card(page: Any) -> None:
    """Clicking a card's button sends a real card callback; the bot's CardResponse redraws the
    card with the new data."""
    with running_bot(cards.route) as (fake, _):
        page.goto(fake.api_base + "/")
        send(page, "lunch at noon?")
        card = page.locator(".card[data-card]")
        expect(card).to_contain_text("lunch at noon?")
        expect(card.locator("dd").nth(1)).to_have_text("0")  # yes
        card.locator(".callback input").fill('{"vote": "yes"}')
        card.locator(".callback button").click()
        expect(card).to_contain_text("user-1 voted yes")
        expect(card.locator("dd").nth(1)).to_have_text("1")
        card.locator(".chips button", has_text="vote=yes").click()  # the remembered button
        expect(card.locator("dd").nth(1)).to_have_text("2")
        assert fake.cards[card.get_attribute("data-card")].card_data["yes"] == "2"


def test_ai_card_streams_live_and_finalises(page: Any) -> None:
    """An AI card shows its partial text while the bot streams, then the full text, marked
    finished."""
    go_on = threading.Event()
    route = dingsync.Router()

    @route.chatbot
    def answer(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        assert ctx.api is not None
        space = robot_space(msg.sender_staff_id or "")
        with ctx.api.cards.ai_card("ai.schema", space, interval=0.0) as card:
            card.append("Sunlight is **scattered**")
            go_on.wait(10)
            card.append(", blue most of all.")

    with running_bot(route) as (fake, _):
        page.goto(fake.api_base + "/")
        send(page, "why is the sky blue?")
        card = page.locator(".card[data-card]")
        expect(card).to_have_class(re.compile(r"\bstreaming\b"))
        expect(card.locator(".stream")).to_have_text("Sunlight is scattered")
        expect(card.locator(".stream strong")).to_have_text("scattered")
        go_on.set()
        expect(card.locator(".stream")).to_have_text("Sunlight is scattered, blue most of all.")
        expect(card.locator(".status")).to_have_text("✓ finished")
        expect(card).not_to_have_class(re.compile(r"\bstreaming\b"))


def test_markdown_script_stays_text(page: Any) -> None:
    """A markdown reply carrying <script> shows the tag as text and runs nothing; markdown
    around it is still rendered."""
    route = dingsync.Router()

    @route.chatbot
    def answer(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        ctx.reply(
            m.Markdown(
                title="x",
                text="**bold** <script>window.pwned = 1</script> "
                "<img src=x onerror='window.pwned = 2'> [link](javascript:window.pwned=3)",
            )
        )

    with running_bot(route) as (fake, _):
        page.goto(fake.api_base + "/")
        send(page, "hi")
        bubble = bot_bubbles(page)
        expect(bubble).to_contain_text("<script>window.pwned = 1</script>")
        expect(bubble.locator("strong")).to_have_text("bold")
        page.locator(".bubble.md a").click()
        assert page.locator(".bubble.md script, .bubble.md img").count() == 0
        assert page.evaluate("window.pwned") is None


def test_drop_shows_the_reconnect(page: Any) -> None:
    """The Drop button kills the bot's connection; the indicator shows the reconnect and the
    inspector the closed and the new connection."""
    with running_bot(calc.route) as (fake, _):
        page.goto(fake.api_base + "/")
        indicator = page.locator("#conn")
        expect(indicator).to_have_text("● connected (1) · reconnects: 0")
        first = fake.connections[0].id
        page.click("button[data-fault=drop]")
        expect(indicator).to_have_text("● connected (1) · reconnects: 1")
        expect(page.locator("#inspector li.connection", has_text=f"{first} closed")).to_have_count(
            1
        )
        assert len(fake.connections) == 2 and not fake.connections[0].alive
        send(page, "2*3")  # the new connection carries messages again
        expect(bot_bubbles(page)).to_have_text(["6"])


def test_saved_transcript_replays_green_then_red_after_the_answer_changes(
    page: Any, tmp_path: Path
) -> None:
    """A chat saved from the window replays as a passing test against the same bot, and
    reports the changed answer once the bot answers differently."""
    with running_bot(calc.route) as (fake, _):
        page.goto(fake.api_base + "/")
        send(page, "1+1")
        expect(bot_bubbles(page)).to_have_text(["2"])
        send(page, "2*(3+4)")
        expect(bot_bubbles(page)).to_have_text(["2", "14"])
        with page.expect_download() as download:
            page.click("#save-transcript")
        saved = tmp_path / "calc.json"
        download.value.save_as(saved)
    transcript = json.loads(saved.read_text())
    assert [t["text"] for t in transcript["turns"]] == ["1+1", "2*(3+4)"]

    assert replay_transcript(saved, calc.route).differences == ()

    changed = dingsync.Router()

    @changed.chatbot
    def wrong(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        ctx.reply_text("3" if msg.text == "1+1" else calc.answer(msg.text))

    result = replay_transcript(saved, changed, settle=0.3)
    assert not result.ok
    assert result.differences == (
        "turn 1 (user-1: '1+1'), answer 1: expected a text reply '2', got a text reply '3'",
    )
