"""The emulator's control API: lets another process drive an emulator (``dingworker --emulator``,
``make demo``, curl) over HTTP on the ``api`` host.

No DingTalk URL starts with ``/_emulator/``, so these routes cannot shadow a real one. JSON keys
may be snake_case (``sender_staff_id``) or DingTalk's camelCase (``senderStaffId``).

- ``POST /_emulator/chatbot`` ``{"text": "1+1", "conversation_type": "2", ...}`` -> ``{"messageId"}``;
  the other keys are the keyword arguments of ``FakeDingTalk.push_chatbot``.
- ``POST /_emulator/event`` ``{"event_type": "user_add_org", "data": {...}}`` -> ``{"messageId"}``
- ``POST /_emulator/card_callback`` ``{"out_track_id": "t1", "params": {...}, "user_id": "u"}``
  -> ``{"messageId"}``
- ``GET /_emulator/replies[?message_id=M&wait=S]`` -> ``{"replies": [...]}``: session-webhook
  replies; with ``message_id`` only those answering it, waiting up to ``wait`` seconds for one.
- ``GET /_emulator/acks[?message_id=M&wait=S]`` -> ``{"acks": [...]}``, likewise.
- ``GET /_emulator/status`` -> ``{"clientId", "connections"}``; ``?wait=S`` waits up to S seconds
  for a client to connect.
- ``GET /_emulator/sent`` -> ``{"robot": [...], "webhook": [...]}``: what was sent to DingTalk
  (robot OpenAPI messages, 1:1 and group; custom-robot webhook messages), oldest first.

A push that no connected client subscribes to waits in the emulator; its answer then carries
``"pending": true`` and a ``warning`` saying why, and the warning is logged.

Example::

    curl -s -X POST "$DINGSYNC_EMULATOR/_emulator/chatbot" -H 'Content-Type: application/json' \\
        -d '{"text": "1+1"}'
    curl -s "$DINGSYNC_EMULATOR/_emulator/replies?message_id=...&wait=5"
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional

import attrs

from .._http import BadJson, Request, Response, json_response, new_error, route

if TYPE_CHECKING:
    from .._fake import FakeDingTalk

__all__: List[str] = []

log = logging.getLogger("dingsync.testing.control")

PREFIX = "/_emulator"
MAX_WAIT = 30.0  # a long poll never holds a server thread longer than this
_POLL = 0.02
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
# Parameters that take Python objects (a Connection), not JSON values.
_NOT_JSON = frozenset({"connection"})


class _Invalid(Exception):
    """The request is wrong; the message goes back in a 400."""


def _snake(key: str) -> str:
    return _CAMEL.sub("_", key).lower()


def _body(request: Request) -> Dict[str, Any]:
    if not request.body:
        return {}
    try:
        body = request.json()
    except BadJson as exc:
        raise _Invalid(f"the body must be a JSON object: {exc}") from None
    if not isinstance(body, dict):
        raise _Invalid("the body must be a JSON object")
    return {str(k): v for k, v in body.items()}


def _pop(body: Dict[str, Any], name: str, default: Any = None) -> Any:
    """Remove and return field ``name`` given in snake_case or camelCase."""
    head, *rest = name.split("_")
    camel = head + "".join(part.title() for part in rest)
    value = body.pop(camel, default)
    return body.pop(name, value)


def _call(method: Callable[..., Any], args: List[Any], fields: Mapping[str, Any]) -> Any:
    """Call ``method`` with the request's fields as keyword arguments.

    A camelCase field whose snake_case form is a parameter becomes that parameter; other fields
    go through unchanged when the method takes ``**extra`` (e.g. extra chatbot data fields) and
    are refused, with the known names, when it does not.
    """
    parameters = list(inspect.signature(method).parameters.values())
    known = {
        p.name
        for p in parameters[len(args) :]  # the positional ones are already filled
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    } - _NOT_JSON
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    kwargs: Dict[str, Any] = {}
    unknown: List[str] = []
    for key, value in fields.items():
        snake = _snake(key)
        if snake in known:
            kwargs[snake] = value
        elif open_ended and snake not in _NOT_JSON:
            kwargs[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise _Invalid(
            f"unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
        )
    try:
        return method(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise _Invalid(str(exc)) from None


def _wait_seconds(request: Request, name: str = "wait") -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise _Invalid(f"{name} must be a number of seconds, got {raw!r}") from None
    return max(0.0, min(value, MAX_WAIT))


def _jsonable(value: Any) -> Any:
    if attrs.has(type(value)):
        # repr=False marks the session token: a credential, even on the emulator.
        fields = {
            f.name: getattr(value, f.name) for f in attrs.fields(type(value)) if f.repr is not False
        }
        text = getattr(value, "text", None)
        if isinstance(text, str) and "text" not in fields:
            fields["text"] = text
        return _jsonable(fields)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _answers(record: Any, message_id: str) -> bool:
    """Whether a recorded reply (``.message_id``) or ack (``headers.messageId``) belongs to
    ``message_id``."""
    found: Any = getattr(record, "message_id", None)
    if isinstance(record, Mapping):
        headers = record.get("headers")
        if isinstance(headers, Mapping):
            found = headers.get("messageId")
    return bool(found == message_id)


def _poll(records: Callable[[], List[Any]], message_id: Optional[str], wait: float) -> List[Any]:
    # Polling the recorded lists (rather than the wait_for_* helpers) keeps a long poll from
    # consuming or reordering anything a test in the same process is waiting for.
    deadline = time.monotonic() + wait
    while True:
        found = [r for r in records() if message_id is None or _answers(r, message_id)]
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(_POLL)


def _guard(func: Callable[[FakeDingTalk, Request], Response]) -> Callable[..., Response]:
    def handler(fake: FakeDingTalk, request: Request) -> Response:
        try:
            return func(fake, request)
        except _Invalid as exc:
            return new_error(400, "InvalidParameter", str(exc))

    handler.__name__ = func.__name__
    handler.__doc__ = func.__doc__
    return handler


def _pushed(fake: FakeDingTalk, message_id: str) -> Response:
    """The answer to a push: its id, and a warning when no connection will take it."""
    answer: Dict[str, Any] = {"messageId": message_id}
    push = next((p for p in fake.pending if p.message_id == message_id), None)
    if push is not None:
        subscribed = sorted(
            {f"{s.type} {s.topic}" for c in fake.live_connections for s in c.subscriptions}
        )
        if subscribed:
            warning = (
                f"no connected client subscribes to {push.type} {push.topic} (they subscribe "
                f"to: {', '.join(subscribed)}); nothing handles this message"
            )
        else:
            warning = "no client is connected; the message waits for one that subscribes to it"
        answer.update(pending=True, warning=warning)
        log.warning("message %s: %s", message_id, warning)
    return json_response(answer)


@route("api", "POST", f"{PREFIX}/chatbot")
@_guard
def push_chatbot(fake: FakeDingTalk, request: Request) -> Response:
    """Push a chatbot message to the connected client."""
    body = _body(request)
    text = _pop(body, "text", "hi")
    if not isinstance(text, str):
        raise _Invalid("text must be a string")
    return _pushed(fake, _call(fake.push_chatbot, [text], body))


@route("api", "POST", f"{PREFIX}/event")
@_guard
def push_event(fake: FakeDingTalk, request: Request) -> Response:
    """Push an event (``event_type`` and a ``data`` object)."""
    body = _body(request)
    event_type = _pop(body, "event_type")
    data = _pop(body, "data", {})
    if not isinstance(event_type, str) or not event_type:
        raise _Invalid("event_type is required, e.g. user_add_org")
    if not isinstance(data, dict):
        raise _Invalid("data must be a JSON object")
    return _pushed(fake, _call(fake.push_event, [event_type, data], body))


@route("api", "POST", f"{PREFIX}/card_callback")
@_guard
def push_card_callback(fake: FakeDingTalk, request: Request) -> Response:
    """Push a card callback (``out_track_id`` and the submitted ``params``)."""
    body = _body(request)
    out_track_id = _pop(body, "out_track_id")
    params = _pop(body, "params", {})
    if not isinstance(out_track_id, str) or not out_track_id:
        raise _Invalid("out_track_id is required: the card's outTrackId")
    if not isinstance(params, dict):
        raise _Invalid("params must be a JSON object")
    return _pushed(fake, _call(fake.push_card_callback, [out_track_id, params], body))


@route("api", "GET", f"{PREFIX}/replies")
@_guard
def replies(fake: FakeDingTalk, request: Request) -> Response:
    """Session-webhook replies, optionally those answering one message (long poll with wait)."""
    found = _poll(
        lambda: list(fake.replies), request.query.get("message_id"), _wait_seconds(request)
    )
    return json_response({"replies": _jsonable(found)})


@route("api", "GET", f"{PREFIX}/acks")
@_guard
def acks(fake: FakeDingTalk, request: Request) -> Response:
    """Acks received from the client, optionally for one message (long poll with wait)."""
    found = _poll(lambda: list(fake.acks), request.query.get("message_id"), _wait_seconds(request))
    return json_response({"acks": _jsonable(found)})


@route("api", "GET", f"{PREFIX}/status")
@_guard
def status(fake: FakeDingTalk, request: Request) -> Response:
    """The client id and the number of open gateway connections (``wait`` for the first one)."""
    deadline = time.monotonic() + _wait_seconds(request)
    while True:
        count = len(fake.live_connections)
        if count or time.monotonic() >= deadline:
            return json_response({"clientId": fake.client_id, "connections": count})
        time.sleep(_POLL)


@route("api", "GET", f"{PREFIX}/sent")
@_guard
def sent(fake: FakeDingTalk, request: Request) -> Response:
    """Messages sent to DingTalk: robot OpenAPI sends and custom-robot webhook messages."""
    return json_response(
        {
            "robot": _jsonable(list(fake.sent)),
            "webhook": _jsonable(list(fake.webhook_messages)),
        }
    )
