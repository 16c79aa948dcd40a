"""The README's picture of the chat window (``make screenshots``), taken in real Chromium.

A small bot answers arithmetic (the calculator example), ``card`` (the vote card example),
``ai`` (an AI card streamed word by word) and anything else with markdown; the script has a
short conversation with it and saves the window as a PNG.

Run::

    python -m benchmarks.chat_screenshot docs/chat-window.png
"""

from __future__ import annotations

import sys
from typing import Any, List

import dingsync
from benchmarks.chromium import launch, running_bot
from dingsync import messages as m
from dingsync.api.cards import robot_space
from examples import calc, cards

__all__ = ["demo_router", "main"]


def demo_router() -> dingsync.Router:
    """The bot of the picture: calculator, vote card, AI card and markdown answers."""
    route = dingsync.Router()

    @route.chatbot
    def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        text = msg.text.strip()
        if text == "card":
            cards.on_message(msg, ctx)
        elif text == "ai":
            assert ctx.api is not None
            space = robot_space(msg.sender_staff_id or "")
            with ctx.api.cards.ai_card("ai-answer.schema", space, interval=0.0) as card:
                for word in "Sunlight is **scattered** by the air, blue light most of all.".split():
                    card.append(word + " ")
        elif any(ch.isdigit() for ch in text):
            ctx.reply_text(calc.answer(text))
        else:
            ctx.reply(
                m.Markdown(
                    title="help",
                    text="### What I can do\n- arithmetic: `2*(3+4)`\n- **card**: a vote card\n"
                    "- **ai**: a streamed answer",
                )
            )

    route.card_callback(cards.on_vote)
    return route


def main(argv: List[str]) -> int:
    """Take the picture; ``argv[0]`` is the PNG to write."""
    out = argv[0] if argv else "docs/chat-window.png"
    with running_bot(demo_router()) as (fake, _), launch() as browser:
        page: Any = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(10_000)
        page.goto(fake.api_base + "/")
        for text, wait_for in (
            ("help", ".bubble.md h3"),
            ("2*(3+4)", ".msg.bot >> text=14"),
            ("card", ".card[data-card]"),
            ("ai", ".card .status >> text=finished"),
        ):
            page.fill("#input", text)
            page.press("#input", "Enter")
            page.wait_for_selector(wait_for)
        vote = page.locator(".card[data-card]").first
        vote.locator(".callback input").fill('{"vote": "yes"}')
        vote.locator(".callback button").click()
        page.wait_for_selector(".card[data-card] >> text=user-1 voted yes")
        page.locator("#inspector li.ack").last.click()  # one frame opened in the inspector
        page.screenshot(path=out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
