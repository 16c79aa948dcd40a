"""The Router the soak's ``dingworker`` replicas run (``tests.soak.soak_app:route``).

Every handler ends by counting the message in Redis (``HINCRBY soak:handled <key> 1`` on the
database named by ``SOAK_RECORD_URL``, apart from the dedupe store's), so the test can check
that each message was handled exactly once across the replicas. The count is the last step:
a handler that fails before it (the ``flaky`` directive, a failed OpenAPI call) is not counted,
and its redelivery runs it again, as the library intends.

Directives in a chatbot text or in an event's ``data.do``:

- ``slow``: sleep ``SOAK_SLOW_SECONDS`` (longer than the emulator's redelivery delay), so the
  message is redelivered while it is still running, often to another replica;
- ``api``: send to a group through the OpenAPI (``ctx.api``), which needs an access token, so
  the emulator's ``expire_tokens()`` forces refreshes;
- ``reply``: reply through the session webhook;
- ``flaky``: raise on the first attempt (an error ack; the redelivery succeeds).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Optional

import dingsync
from dingsync import messages as m

route = dingsync.Router()

HANDLED = "soak:handled"  # hash: message key -> times handled
BY_WORKER = "soak:by_worker"  # hash: pid -> messages handled
FLAKY_FAILURES = "soak:flaky_failures"  # counter: deliberate first-attempt failures
API_SENDS = "soak:api_sends"  # counter: successful OpenAPI sends

_lock = threading.Lock()
_client: Optional[Any] = None


def _redis() -> Any:
    global _client
    with _lock:
        if _client is None:
            import redis

            _client = redis.Redis.from_url(os.environ["SOAK_RECORD_URL"])
        return _client


def _run(key: str, directives: str, ctx: dingsync.Context, msg: Any = None) -> None:
    if "flaky" in directives and not ctx.redelivered:
        _redis().incr(FLAKY_FAILURES)
        raise RuntimeError(f"deliberate first-attempt failure of {key}")
    if "slow" in directives:
        time.sleep(float(os.environ.get("SOAK_SLOW_SECONDS", "3")))
    if "api" in directives:
        ctx.api.robot.send_to_group("cidSoakGroup==", m.Text(f"soak {key}"))
        _redis().incr(API_SENDS)
    if "reply" in directives and msg is not None:
        ctx.reply_text(f"ok {key}")
    pipe = _redis().pipeline(transaction=False)
    pipe.hincrby(HANDLED, key, 1)
    pipe.hincrby(BY_WORKER, str(os.getpid()), 1)
    pipe.execute()


@route.chatbot
def on_message(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
    _run(f"msg:{msg.msg_id}", msg.text, ctx, msg)


@route.event("soak_event")
def on_event(ev: dingsync.Event, ctx: dingsync.Context) -> None:
    directives = ev.data.get("do")
    _run(f"ev:{ctx.message_id}", directives if isinstance(directives, str) else "", ctx)
