"""A Function Compute (Alibaba Cloud) function that receives DingTalk's callbacks over HTTP.

Function Compute's Python HTTP trigger calls ``handler(environ, start_response)``, a WSGI
application, so the function is the CallbackApp. Deploy this file with:

- entry point ``serverless_fc.handler``, an HTTP trigger that allows POST;
- environment ``DINGTALK_CLIENT_ID``, ``DINGTALK_CLIENT_SECRET``, ``DINGTALK_EVENT_TOKEN``,
  ``DINGTALK_EVENT_AES_KEY`` and, to share the dedupe store, the token and the work queue
  between instances, ``REDIS_URL``;
- in the developer console: the robot's message receiving mode "HTTP" and the event
  subscription's "HTTP push" both pointing at the trigger's URL.

Function Compute freezes an instance once the answer is sent, and DingTalk wants an event's
answer within 1500 ms. So the handlers here answer at once and hand slow work on
(:func:`hand_on`, a Redis list another worker reads) instead of starting threads, which a
frozen instance would not run. The access token lives in Redis or a ``/tmp`` file, not in a
module global: an instance may be thrown away at any time.

Example:
    >>> greeting(["u1", "u2"])
    'welcome, u1 and u2'
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional

import dingsync
from dingsync.callbacks import CallbackApp

__all__ = ["route", "handler", "build_app", "hand_on", "greeting", "QUEUE"]

log = logging.getLogger(__name__)

route = dingsync.Router()

#: The Redis list that slow work is handed to.
QUEUE = "dingsync:example:tasks"


def greeting(user_ids: List[str]) -> str:
    """The welcome text for new members."""
    return "welcome, " + " and ".join(user_ids)


@route.chatbot
def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
    """Reply at once; the reply goes out through the session webhook, as in Stream mode."""
    ctx.reply_text(f"got it: {msg.text}")


@route.event("user_add_org")
def on_join(event: dingsync.Event, ctx: dingsync.Context) -> None:
    """The answer must leave within 1500 ms: queue the slow part and return."""
    hand_on("welcome", {"text": greeting(list(event.data.get("userId", [])))})


def hand_on(task: str, payload: Mapping[str, Any]) -> None:
    """Queue ``task`` for another worker (``RPUSH`` to :data:`QUEUE` on ``REDIS_URL``);
    without Redis (a local run) it is only logged."""
    url = os.environ.get("REDIS_URL")
    if not url:
        log.info("no REDIS_URL: task %s not queued (%s)", task, dict(payload))
        return
    import redis

    redis.Redis.from_url(url).rpush(QUEUE, json.dumps({"task": task, **payload}))


def build_app(environ: Optional[Mapping[str, str]] = None) -> CallbackApp:
    """The CallbackApp, configured from the environment (see the module docstring)."""
    env = os.environ if environ is None else environ
    credentials = dingsync.Credentials.from_env(env)
    redis_url = env.get("REDIS_URL")
    dedupe: Any = None
    cache: Any = dingsync.FileTokenCache("/tmp/dingsync-tokens.json")
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url)
        dedupe = dingsync.RedisDedupeStore(client)
        cache = dingsync.RedisTokenCache(client)
    return CallbackApp(
        route,
        credentials,
        event_token=env.get("DINGTALK_EVENT_TOKEN"),
        event_aes_key=env.get("DINGTALK_EVENT_AES_KEY"),
        dedupe=dedupe,
        endpoints=dingsync.Endpoints.from_env(env),
        token_cache=cache,  # the ApiClient is made when a handler first needs it
    )


_app: Optional[CallbackApp] = None


def handler(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Function Compute's entry point. The app is built on the first request, not at import,
    so that the import stays small and the environment is read when the function runs."""
    global _app
    if _app is None:
        _app = build_app()
    return _app(environ, start_response)
