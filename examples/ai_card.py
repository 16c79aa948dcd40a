"""AI card streaming: a "typewriter" answer in a chat, written chunk by chunk.

A stand-in for a language model yields words; ``api.cards.ai_card`` creates and delivers the
card, batches the words into at most one update per ``interval`` seconds (DingTalk throttles
per-word updates), finalizes the card at the end, and marks it failed if generation raises.

Configuration (environment)::

    DINGTALK_CLIENT_ID, DINGTALK_CLIENT_SECRET   the app's credentials
    CARD_TEMPLATE_ID                             an AI card template with a "content" variable
    CARD_CONVERSATION_ID                         a group's openConversationId, or
    CARD_USER_ID                                 a user for a 1:1 chat with the robot
    CARD_WORD_DELAY                              optional seconds between words (default 0.05)

Run::

    python examples/ai_card.py "Why is the sky blue?"

Example:
    >>> list(fake_llm("Why?", delay=0))[:3]
    ['Let ', 'me ', 'think ']
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterator

import dingsync
from dingsync.api.cards import group_space, robot_space
from dingsync.errors import ConfigurationError, DingSyncError

__all__ = ["fake_llm", "main"]

ANSWER = (
    "Let me think about that. Sunlight is scattered by the molecules of the air, and blue "
    "light is scattered much more than red light (Rayleigh scattering), so the sky looks blue."
)


def fake_llm(question: str, *, delay: float = 0.05) -> Iterator[str]:
    """Yield the answer word by word, like a streaming model API."""
    for word in ANSWER.split(" "):
        if delay:
            time.sleep(delay)
        yield word + " "


def main(argv: list[str]) -> int:
    """Stream one answer into a new card; returns the process exit code."""
    question = " ".join(argv) or "Why is the sky blue?"
    try:
        template = os.environ.get("CARD_TEMPLATE_ID", "")
        group = os.environ.get("CARD_CONVERSATION_ID")
        user = os.environ.get("CARD_USER_ID")
        if not template or not (group or user):
            raise ConfigurationError(
                "set CARD_TEMPLATE_ID and CARD_CONVERSATION_ID or CARD_USER_ID"
            )
        space = group_space(group) if group else robot_space(user or "")
        delay = float(os.environ.get("CARD_WORD_DELAY", "0.05"))
        with dingsync.ApiClient(dingsync.Credentials.from_env()) as api:
            with api.cards.ai_card(
                template,
                space,
                key="content",
                card_data={"question": question},
                interval=0.3,
                error_text="(the answer could not be completed)",
            ) as card:
                for chunk in fake_llm(question, delay=delay):
                    card.append(chunk)
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except DingSyncError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    print(f"card {card.out_track_id} finished after {card.updates} updates")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
