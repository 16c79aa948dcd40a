"""Receiving without a websocket: DingTalk's HTTP callbacks as a WSGI application.

:class:`CallbackApp` verifies robot-message signatures, decrypts event subscriptions and
authenticates card clicks, then runs the same :class:`~dingsync.Router` a
:class:`~dingsync.StreamClient` runs. Serve it with any WSGI server (``dingworker --http``
uses waitress), mount it in Flask or Django, or call it from a Function Compute handler.

Example:
    >>> import dingsync
    >>> from dingsync.callbacks import CallbackApp
    >>> route = dingsync.Router()
    >>> @route.chatbot
    ... def echo(msg, ctx):
    ...     ctx.reply_text(msg.text)
    >>> app = CallbackApp(route, dingsync.Credentials(client_id="my-id", client_secret="my-secret"))
"""

from __future__ import annotations

from .app import MAX_BODY, CallbackAnswer, CallbackApp, CallbackRequest
from .cards import CARD_PARAM, CardAuth, UrlSecret
from .crypto import CallbackRejected, EventCrypto, robot_sign, verify_robot_sign
from .mounting import mount

__all__ = [
    "CallbackApp",
    "CallbackRequest",
    "CallbackAnswer",
    "CallbackRejected",
    "EventCrypto",
    "CardAuth",
    "UrlSecret",
    "robot_sign",
    "verify_robot_sign",
    "mount",
    "CARD_PARAM",
    "MAX_BODY",
]
