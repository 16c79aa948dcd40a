"""The rest of the control API: every knob of the emulator over HTTP on the ``api`` host, so
that the chat window, and tests of bots written with other languages' SDKs, can do what a
Python test does (``control.py`` pushes messages and reads replies and acks).

Gateway knobs take an optional ``{"connection": "<id>"}`` (default: the newest live
connection) and answer ``{"connection": id}``, or 409 ``NoConnection`` when no client is
connected:

- ``POST /_emulator/ping`` -> also ``{"messageId"}``: a SYSTEM ping; the pong is in ``acks``.
- ``POST /_emulator/disconnect`` ``{"close_after": 10}`` -> also ``{"messageId"}``: SYSTEM
  disconnect, then the socket closes ``close_after`` seconds later.
- ``POST /_emulator/drop``: TCP shut down without a close frame.
- ``POST /_emulator/stall`` / ``POST /_emulator/resume``: a zombie connection, and back.
- ``POST /_emulator/redelivery`` ``{"events": 5, "callbacks": 5}``: seconds before an un-acked
  frame is pushed again (``null`` = never) -> the settings now in force.
- ``GET /_emulator/connections`` -> ``{"connections": [...]}``, oldest first.
- ``GET /_emulator/violations`` -> ``{"violations": [...]}``: protocol violations of the client.

OpenAPI knobs (the keyword arguments of the ``FakeDingTalk`` method of the same name):

- ``POST /_emulator/fail_next`` ``{"method": "POST", "path": "/v1.0/...", "status": 500,
  "body": {...}, "times": 1, "delay": 0, "reset": false, "after": 0}``
- ``POST /_emulator/expire_tokens``, ``POST /_emulator/advance`` ``{"seconds": 7200}``,
  ``POST /_emulator/expire_session`` ``{"message_id": "..."}``
- ``POST /_emulator/webhook_robot`` ``{"token": "...", "secret": "SEC...", "keywords": [...]}``
  -> ``{"url"}``: register a custom group robot.

Example::

    curl -s -X POST "$DINGSYNC_EMULATOR/_emulator/drop"
    curl -s "$DINGSYNC_EMULATOR/_emulator/connections"
    curl -s -X POST "$DINGSYNC_EMULATOR/_emulator/fail_next" -H 'Content-Type: application/json' \\
        -d '{"method": "POST", "path": "/v1.0/robot/oToMessages/batchSend", "status": 429}'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List

from .._http import Request, Response, json_response, new_error, route
from .._records import Connection
from .control import PREFIX, _body, _call, _guard, _Invalid, _pop

if TYPE_CHECKING:
    from .._fake import FakeDingTalk

__all__: List[str] = []


def _connection_json(conn: Connection) -> Dict[str, Any]:
    return {
        "id": conn.id,
        "alive": conn.alive,
        "draining": conn.draining,
        "stalled": conn.stalled,
        "openedAt": conn.opened_at,
        "closedAt": conn.closed_at,
        "closeCode": conn.close_code,
        "framesSent": conn.frames_sent,
        "subscriptions": [{"type": s.type, "topic": s.topic} for s in conn.subscriptions],
    }


def _knob(fake: FakeDingTalk, request: Request, act: Callable[..., Any], *fields: str) -> Response:
    """Run ``act(connection_id, **fields)`` and answer with the connection it acted on (and the
    messageId of the frame it sent, if any). ``fields`` are the body fields besides
    ``connection`` that ``act`` takes; any other field is refused."""
    body = _body(request)
    connection = _pop(body, "connection")
    if connection is not None and not isinstance(connection, str):
        raise _Invalid("connection must be a connection id (a string)")
    given = {name: _pop(body, name) for name in fields}
    _no_fields(body, *fields)
    try:
        conn = fake._resolve(connection)
        result = act(conn.id, **{k: v for k, v in given.items() if v is not None})
    except KeyError as exc:
        raise _Invalid(str(exc.args[0])) from None
    except RuntimeError as exc:
        return new_error(409, "NoConnection", str(exc))
    answer: Dict[str, Any] = {"connection": conn.id}
    if isinstance(result, str):
        answer["messageId"] = result
    return json_response(answer)


def _no_fields(body: Dict[str, Any], *known: str) -> None:
    if body:
        names = ", ".join(sorted(("connection", *known)))
        raise _Invalid(f"unknown field(s) {', '.join(sorted(body))}; known: {names}")


@route("api", "POST", f"{PREFIX}/ping")
@_guard
def ping(fake: FakeDingTalk, request: Request) -> Response:
    """Send a SYSTEM ping."""
    return _knob(fake, request, fake.ping)


@route("api", "POST", f"{PREFIX}/disconnect")
@_guard
def disconnect(fake: FakeDingTalk, request: Request) -> Response:
    """Send a SYSTEM disconnect and close the connection later."""

    def act(conn: str, close_after: Any = 10.0) -> str:
        number = isinstance(close_after, (int, float)) and not isinstance(close_after, bool)
        if not number or close_after < 0:
            raise _Invalid("close_after must be a number of seconds >= 0")
        return fake.disconnect(float(close_after), conn)

    return _knob(fake, request, act, "close_after")


@route("api", "POST", f"{PREFIX}/drop")
@_guard
def drop(fake: FakeDingTalk, request: Request) -> Response:
    """Kill a connection abruptly."""
    return _knob(fake, request, fake.drop)


@route("api", "POST", f"{PREFIX}/stall")
@_guard
def stall(fake: FakeDingTalk, request: Request) -> Response:
    """Make a connection a zombie (until resume)."""
    return _knob(fake, request, fake.stall)


@route("api", "POST", f"{PREFIX}/resume")
@_guard
def resume(fake: FakeDingTalk, request: Request) -> Response:
    """Undo stall, on one connection or (without ``connection``) on all."""
    body = _body(request)
    connection = _pop(body, "connection")
    _no_fields(body)
    try:
        fake.resume(connection)
    except KeyError as exc:
        raise _Invalid(str(exc.args[0])) from None
    stalled = [c.id for c in fake.connections if c.stalled]
    return json_response({"stalled": stalled})


@route("api", "POST", f"{PREFIX}/redelivery")
@_guard
def redelivery(fake: FakeDingTalk, request: Request) -> Response:
    """Set how long an un-acked event/callback waits before it is pushed again."""
    body = _body(request)
    for name in ("events", "callbacks"):
        if name not in body:
            continue
        value = body.pop(name)
        if value is not None and (not isinstance(value, (int, float)) or value <= 0):
            raise _Invalid(f"{name} must be a number of seconds > 0, or null for never")
        setattr(fake, f"redeliver_{name}_after", None if value is None else float(value))
    if body:
        raise _Invalid(f"unknown field(s) {', '.join(sorted(body))}; known: callbacks, events")
    return json_response(
        {"events": fake.redeliver_events_after, "callbacks": fake.redeliver_callbacks_after}
    )


@route("api", "GET", f"{PREFIX}/connections")
@_guard
def connections(fake: FakeDingTalk, request: Request) -> Response:
    """Every gateway connection so far, oldest first."""
    return json_response({"connections": [_connection_json(c) for c in list(fake.connections)]})


@route("api", "GET", f"{PREFIX}/violations")
@_guard
def violations(fake: FakeDingTalk, request: Request) -> Response:
    """The client's protocol violations (bad acks, wrong pong opaque ...)."""
    return json_response({"violations": list(fake.violations)})


def _required(body: Dict[str, Any], name: str) -> str:
    value = _pop(body, name)
    if not isinstance(value, str) or not value:
        raise _Invalid(f"{name} is required (a string)")
    return value


@route("api", "POST", f"{PREFIX}/fail_next")
@_guard
def fail_next(fake: FakeDingTalk, request: Request) -> Response:
    """Make the next request(s) of a route fail."""
    body = _body(request)
    method, path = _required(body, "method"), _required(body, "path")
    _call(fake.fail_next, [method, path], body)
    return json_response({"method": method.upper(), "path": path})


@route("api", "POST", f"{PREFIX}/expire_tokens")
@_guard
def expire_tokens(fake: FakeDingTalk, request: Request) -> Response:
    """Invalidate every access token issued so far."""
    _call(fake.expire_tokens, [], _body(request))
    return json_response({})


@route("api", "POST", f"{PREFIX}/advance")
@_guard
def advance(fake: FakeDingTalk, request: Request) -> Response:
    """Move the emulator's clock forward (tokens, tickets and session webhooks expire)."""
    body = _body(request)
    seconds = _pop(body, "seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise _Invalid("seconds must be a number >= 0")
    _call(fake.advance, [float(seconds)], body)
    return json_response({"now": fake.now()})


@route("api", "POST", f"{PREFIX}/expire_session")
@_guard
def expire_session(fake: FakeDingTalk, request: Request) -> Response:
    """Expire the session webhook of a pushed message."""
    body = _body(request)
    message_id = _required(body, "message_id")
    try:
        _call(fake.expire_session, [message_id], body)
    except KeyError as exc:
        return new_error(404, "SessionNotFound", str(exc.args[0]))
    return json_response({"messageId": message_id})


@route("api", "POST", f"{PREFIX}/webhook_robot")
@_guard
def webhook_robot(fake: FakeDingTalk, request: Request) -> Response:
    """Register a custom group robot; answers its webhook URL."""
    body = _body(request)
    token = _required(body, "token")
    for name in ("keywords", "ip_whitelist"):
        if isinstance(body.get(name), list):
            body[name] = tuple(body[name])
    return json_response({"url": _call(fake.add_webhook_robot, [token], body)})
