"""The echo bot: replies with what it was sent.

Run it against DingTalk (or locally, with ``--emulator``)::

    export DINGTALK_CLIENT_ID=... DINGTALK_CLIENT_SECRET=...
    dingworker examples.echo:route
    dingworker --emulator examples.echo:route

Example:
    >>> echo_text("hello", "Alice", is_group=True)
    'Alice said: hello'
    >>> echo_text("", None, is_group=False, msgtype="picture")
    'I got a picture message but can only echo text.'
"""

from __future__ import annotations

from typing import Optional

import dingsync

__all__ = ["route", "echo_text"]

route = dingsync.Router()


def echo_text(text: str, nick: Optional[str], *, is_group: bool, msgtype: str = "text") -> str:
    """The reply to a message: the text itself in a 1:1 chat, prefixed by the sender in a group."""
    if not text:
        return f"I got a {msgtype} message but can only echo text."
    if is_group:
        return f"{nick or 'someone'} said: {text}"
    return text


@route.chatbot
def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
    """Echo every message back to the conversation it came from."""
    ctx.reply_text(echo_text(msg.text, msg.sender_nick, is_group=msg.is_group, msgtype=msg.msgtype))
