"""The card bot: send it a question, it posts a vote card; clicks update the card.

Message the bot ``lunch at noon?`` and it creates an interactive card with that question (through
``ctx.reply_card``, delivered to the chat the message came from). Each click on the card arrives as
a card callback; the handler answers with a :class:`dingsync.CardResponse`, and DingTalk applies
the new card data to the card everyone sees.

Create a card template with the variables ``question``, ``yes``, ``no`` and ``status`` and two
buttons whose callback params are ``{"vote": "yes"}`` and ``{"vote": "no"}``, set its id in
``CARD_TEMPLATE_ID``, then::

    export DINGTALK_CLIENT_ID=... DINGTALK_CLIENT_SECRET=... CARD_TEMPLATE_ID=...schema
    dingworker examples.cards:route

Locally: ``dingworker --emulator examples.cards:route`` (the emulator accepts any template id).

Example:
    >>> tally({"yes": "2", "no": "0"}, "yes")
    {'yes': '3', 'no': '0'}
"""

from __future__ import annotations

import os
import threading
from typing import Dict, Mapping

import dingsync
from dingsync.api.cards import new_out_track_id

__all__ = ["route", "tally", "TEMPLATE_ID", "VOTES"]

TEMPLATE_ID = os.environ.get("CARD_TEMPLATE_ID", "vote-card-template.schema")
VOTES = ("yes", "no")

route = dingsync.Router()

# Votes per card. DingTalk does not send the card's current data with a callback, so the bot
# keeps the count; the lock makes concurrent clicks (handler threads) count once each.
_counts: Dict[str, Dict[str, str]] = {}
_lock = threading.Lock()


def tally(counts: Mapping[str, str], vote: str) -> Dict[str, str]:
    """The counts after one more ``vote`` (card values are strings at DingTalk)."""
    updated = {key: str(counts.get(key, "0")) for key in VOTES}
    updated[vote] = str(int(updated[vote]) + 1)
    return updated


@route.chatbot
def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
    """Post a vote card asking the message's text."""
    question = msg.text or "Vote?"
    out_track_id = new_out_track_id()
    with _lock:
        _counts[out_track_id] = {"yes": "0", "no": "0"}
    result = ctx.reply_card(  # to this group, or to the sender's 1:1 chat with the robot
        TEMPLATE_ID,
        {"question": question, "yes": "0", "no": "0", "status": "open"},
        out_track_id=out_track_id,
        fallback=f"Vote: {question} (the card needs the OpenAPI: run this bot with dingworker)",
    )
    if result is not None:
        ctx.logger.info("posted card %s: %r", out_track_id, question)


@route.card_callback
def on_vote(cb: dingsync.CardCallback, ctx: dingsync.Context) -> dingsync.CardResponse:
    """Count the click and update the card for everyone."""
    vote = str(cb.params.get("vote", ""))
    if vote not in VOTES:
        ctx.logger.warning("ignoring unknown vote %r on card %s", vote, cb.out_track_id)
        return dingsync.CardResponse()
    with _lock:
        counts = tally(_counts.get(cb.out_track_id, {}), vote)
        _counts[cb.out_track_id] = counts
    return dingsync.CardResponse(
        card_data={**counts, "status": f"{cb.user_id or 'someone'} voted {vote}"}
    )
