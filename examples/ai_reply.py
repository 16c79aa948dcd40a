"""The AI answer bot: every question gets an AI card that fills in chunk by chunk.

``ctx.reply_ai_card`` creates an AI card in the chat the question came from (the group, or the
sender's 1:1 chat with the robot), streams the appended text into its ``content`` variable
(coalesced to one update per ``interval``), finalizes it at the end and marks it failed if the
model raises. Without the card permission (``Card.Instance.Write`` and ``Card.Streaming.Write``)
or an ApiClient, the same answer goes out as one markdown reply instead.

A stand-in for a language model yields the answer word by word; put your model's streaming
call in :func:`answer_chunks`. Create an AI card template with a ``content`` variable, then::

    export DINGTALK_CLIENT_ID=... DINGTALK_CLIENT_SECRET=... AI_CARD_TEMPLATE_ID=...schema
    dingworker examples.ai_reply:route

Locally: ``dingworker --emulator examples.ai_reply:route`` (the emulator accepts any template id).

Example:
    >>> "".join(answer_chunks("Why is the sky blue?", delay=0)).startswith("You asked")
    True
"""

from __future__ import annotations

import os
import time
from typing import Iterator

import dingsync

__all__ = ["route", "answer_chunks", "TEMPLATE_ID"]

TEMPLATE_ID = os.environ.get("AI_CARD_TEMPLATE_ID", "ai-card-template.schema")
WORD_DELAY = float(os.environ.get("AI_WORD_DELAY", "0.02"))

route = dingsync.Router()


def answer_chunks(question: str, *, delay: float = WORD_DELAY) -> Iterator[str]:
    """The answer, a few characters at a time, like a streaming model API."""
    answer = (
        f"You asked: {question.strip() or '(nothing)'}. Sunlight is scattered by the air, and "
        "blue light much more than red (Rayleigh scattering), so the sky looks blue."
    )
    for word in answer.split(" "):
        if delay:
            time.sleep(delay)
        yield word + " "


@route.chatbot
def on_question(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
    """Stream the answer to ``msg`` into an AI card (or one markdown reply)."""
    with ctx.reply_ai_card(
        TEMPLATE_ID,
        card_data={"question": msg.text or ""},
        title="Answer",
        interval=0.2,
        error_text="(the answer could not be completed)",
    ) as card:
        for chunk in answer_chunks(msg.text or ""):
            card.append(chunk)
