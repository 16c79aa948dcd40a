"""The event logger: logs every event the app is subscribed to.

Subscribe to events in the developer console (Event Subscription, Stream mode), then::

    export DINGTALK_CLIENT_ID=... DINGTALK_CLIENT_SECRET=...
    dingworker examples.events:route --log-format json

Try it locally with ``dingworker --emulator examples.events:route`` and push an event::

    curl -s -X POST "$DINGSYNC_EMULATOR/_emulator/event" -H 'Content-Type: application/json' \\
        -d '{"event_type": "user_add_org", "data": {"userId": ["u1"]}}'

Example:
    >>> describe("user_add_org", {"userId": ["u1", "u2"]})
    'user_add_org: userId=u1, u2'
"""

from __future__ import annotations

from typing import Any, Mapping

import dingsync

__all__ = ["route", "describe"]

route = dingsync.Router()


def describe(event_type: str, data: Mapping[str, Any]) -> str:
    """One readable line per event: its type and its top-level fields."""
    fields = []
    for key, value in sorted(data.items()):
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        fields.append(f"{key}={value}")
    return f"{event_type}: {' '.join(fields)}" if fields else event_type


@route.event("user_add_org")
def on_join(event: dingsync.Event, ctx: dingsync.Context) -> None:
    """A specific event type gets its own handler; it wins over the catch-all below."""
    for user_id in event.data.get("userId", []):
        ctx.logger.info("welcome, %s", user_id)


@route.event()
def on_any(event: dingsync.Event, ctx: dingsync.Context) -> None:
    """Every other event type: log it and acknowledge it."""
    ctx.logger.info("event %s", describe(event.event_type, event.data))
