"""The rest of the control API: the gateway's fault knobs and state, over HTTP on the ``api``
host, so that the chat window, and tests of bots written with other languages' SDKs, can drive
every knob a Python test has (see ``control.py`` for pushing messages and reading replies).

Each POST takes an optional ``{"connection": "<id>"}`` (default: the newest live connection)
and answers ``{"connection": id}``, or 409 ``NoConnection`` when no client is connected.

- ``POST /_emulator/ping`` -> also ``{"messageId"}``: a SYSTEM ping; the pong is in ``acks``.
- ``POST /_emulator/disconnect`` ``{"close_after": 10}`` -> also ``{"messageId"}``: SYSTEM
  disconnect, then the socket closes ``close_after`` seconds later.
- ``POST /_emulator/drop``: TCP shut down without a close frame.
- ``POST /_emulator/stall`` / ``POST /_emulator/resume``: a zombie connection, and back.
- ``POST /_emulator/redelivery`` ``{"events": 5, "callbacks": 5}``: seconds before an un-acked
  frame is pushed again (``null`` = never) -> the settings now in force.
- ``GET /_emulator/connections`` -> ``{"connections": [...]}``, oldest first.
- ``GET /_emulator/violations`` -> ``{"violations": [...]}``: protocol violations of the client.

Example::

    curl -s -X POST "$DINGSYNC_EMULATOR/_emulator/drop"
    curl -s "$DINGSYNC_EMULATOR/_emulator/connections"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List

from .._http import Request, Response, json_response, new_error, route
from .._records import Connection
from .control import PREFIX, _body, _guard, _Invalid, _pop

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
