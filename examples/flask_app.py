"""A Flask site that also receives DingTalk's callbacks, under ``/dingtalk``.

The callbacks are mounted beside the site's own routes with one line; point the console's
robot (HTTP mode), event subscription and card callback URLs at ``https://your.site/dingtalk``::

    export DINGTALK_CLIENT_ID=... DINGTALK_CLIENT_SECRET=...
    export DINGTALK_EVENT_TOKEN=... DINGTALK_EVENT_AES_KEY=...
    export DINGTALK_CARD_CALLBACK_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')
    gunicorn 'examples.flask_app:create_app()'   # or: waitress-serve --call examples.flask_app:create_app

Example:
    >>> site = create_app({"DINGTALK_CLIENT_ID": "id", "DINGTALK_CLIENT_SECRET": "secret"})
    >>> site.test_client().get("/").get_data(as_text=True)
    'orders: 0 approved'
"""

from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

from flask import Flask

import dingsync
from dingsync.callbacks import CallbackApp, mount

__all__ = ["route", "create_app", "APPROVED"]

route = dingsync.Router()

#: Orders approved from a card, by out_track_id (a real site would use its database).
APPROVED: Dict[str, str] = {}


@route.chatbot
def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
    ctx.reply_text(f"{len(APPROVED)} order(s) approved so far")


@route.card_callback
def on_card(cb: dingsync.CardCallback, ctx: dingsync.Context) -> dingsync.CardResponse:
    """An "approve" button on an order card: record it and show it on the card."""
    APPROVED[cb.out_track_id] = cb.user_id or "?"
    return dingsync.CardResponse(card_data={"status": f"approved by {cb.user_id}"})


def create_app(environ: Optional[Mapping[str, str]] = None) -> Flask:
    """The Flask site with DingTalk's callbacks mounted at ``/dingtalk``."""
    env = os.environ if environ is None else environ
    site = Flask(__name__)

    @site.get("/")
    def index() -> str:
        return f"orders: {len(APPROVED)} approved"

    callbacks = CallbackApp(
        route,
        dingsync.Credentials.from_env(env),
        event_token=env.get("DINGTALK_EVENT_TOKEN"),
        event_aes_key=env.get("DINGTALK_EVENT_AES_KEY"),
        card_secret=env.get("DINGTALK_CARD_CALLBACK_SECRET"),
        endpoints=dingsync.Endpoints.from_env(env),
    )
    site.wsgi_app = mount(site.wsgi_app, "/dingtalk", callbacks)  # type: ignore[method-assign]
    site.extensions["dingsync"] = callbacks
    return site
