"""The chat window: a page at the emulator's root URL, its static files, and its live feed.

- ``GET /`` -> the page (``dingsync/testing/static/index.html``, package data: no build step,
  no CDN, works offline).
- ``GET /_emulator/static/<name>`` -> a file of that folder (``vendor/`` holds pinned copies of
  marked and DOMPurify, with their licenses).
- ``GET /_emulator/feed`` -> Server-Sent Events: every frame, ack, reply, OpenAPI call, card
  change, connection change and violation (see ``_chat_feed.py``). A reconnecting browser sends
  ``Last-Event-ID`` and gets what it missed; ``?since=N`` does the same for curl.
- ``GET /_emulator/transcript?conversation_id=C`` -> the conversation as a transcript (JSON, as
  a download); see :mod:`dingsync.testing.transcripts`.
- ``POST /_emulator/upload`` ``{"filename", "contentType", "data": base64}`` ->
  ``{"downloadCode"}``: a file the user "sends"; the bot fetches it through
  ``messageFiles/download`` as at DingTalk.
- ``POST /_emulator/read`` ``{"processQueryKey", "userIds": [...]}``: users saw a robot message.

Example::

    curl -sN "$DINGSYNC_EMULATOR/_emulator/feed"
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import secrets
import time
from importlib import resources
from typing import TYPE_CHECKING, Dict, List

from .._chat_feed import feed_of
from .._http import Request, Response, Write, json_response, new_error, route
from ..transcripts import record_transcript
from .control import PREFIX, _body, _guard, _Invalid, _pop

if TYPE_CHECKING:
    from .._fake import FakeDingTalk

__all__: List[str] = []

STATIC = f"{PREFIX}/static/"
TICK = 0.05  # how often an open feed looks for new events
KEEPALIVE = 15.0  # a comment line this often keeps proxies from closing an idle feed
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".txt": "text/plain"}


def _static(name: str) -> Response:
    folder = resources.files("dingsync.testing") / "static"
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts):
        return new_error(404, "InvalidAction.NotFound", f"no static file {name!r}")
    path = folder
    for part in parts:  # one at a time: Traversable.joinpath takes one name on Python 3.9
        path = path / part
    if not path.is_file():
        return new_error(404, "InvalidAction.NotFound", f"no static file {name!r}")
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    kind = _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    charset = ";charset=utf-8" if kind.startswith("text/") else ""
    return Response(
        200, path.read_bytes(), {"Cache-Control": "no-cache"}, content_type=kind + charset
    )


@route("api", "GET", "/")
def page(fake: FakeDingTalk, request: Request) -> Response:
    """The chat window."""
    return _static("index.html")


@route("api", "GET", STATIC, prefix=True)
def static(fake: FakeDingTalk, request: Request) -> Response:
    """A static file of the chat window."""
    return _static(request.path[len(STATIC) :])


@route("api", "GET", f"{PREFIX}/feed")
@_guard
def feed(fake: FakeDingTalk, request: Request) -> Response:
    """The live event feed (Server-Sent Events)."""
    raw = request.header("last-event-id") or request.query.get("since") or "0"
    try:
        cursor = int(raw)
    except ValueError:
        raise _Invalid(f"since must be an event number, got {raw!r}") from None
    events = feed_of(fake)

    def stream(write: Write) -> None:
        nonlocal cursor
        write(b"retry: 1000\n\n")
        quiet_since = time.monotonic()
        while fake._started:
            batch = events.since(cursor)
            if batch:
                chunk = "".join(
                    f"id: {e['seq']}\ndata: {json.dumps(e, ensure_ascii=False, default=str)}\n\n"
                    for e in batch
                )
                write(chunk.encode("utf-8"))
                cursor = batch[-1]["seq"]
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE:
                write(b": keepalive\n\n")
                quiet_since = time.monotonic()
            time.sleep(TICK)

    return Response(200, content_type="text/event-stream;charset=utf-8", stream=stream)


@route("api", "GET", f"{PREFIX}/transcript")
@_guard
def transcript(fake: FakeDingTalk, request: Request) -> Response:
    """A conversation as a transcript (a JSON download)."""
    conversation_id = request.query.get("conversation_id")
    if not conversation_id:
        raise _Invalid("conversation_id is required")
    try:
        data = record_transcript(fake, conversation_id)
    except LookupError as exc:
        return new_error(404, "ConversationNotFound", str(exc))
    name = "".join(ch for ch in conversation_id if ch.isalnum() or ch in "-_")[:40]
    return json_response(
        data, headers={"Content-Disposition": f'attachment; filename="transcript-{name}.json"'}
    )


@route("api", "POST", f"{PREFIX}/upload")
@_guard
def upload(fake: FakeDingTalk, request: Request) -> Response:
    """Store a file a fake user sends; answers its download code."""
    body = _body(request)
    filename = _pop(body, "filename", "file.bin")
    content_type = _pop(body, "content_type", "application/octet-stream")
    data = _pop(body, "data")
    if not isinstance(filename, str) or not isinstance(content_type, str):
        raise _Invalid("filename and contentType must be strings")
    if not isinstance(data, str):
        raise _Invalid("data (the file's bytes, base64) is required")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _Invalid("data must be base64") from None
    code = "dc" + secrets.token_hex(12)
    fake.add_file(code, raw, filename=filename, content_type=content_type)
    answer: Dict[str, str] = {"downloadCode": code}
    return json_response(answer)


@route("api", "POST", f"{PREFIX}/read")
@_guard
def read(fake: FakeDingTalk, request: Request) -> Response:
    """Mark a robot message read by users (its read status changes)."""
    body = _body(request)
    key = _pop(body, "process_query_key")
    users = _pop(body, "user_ids", [])
    if not isinstance(key, str) or not key:
        raise _Invalid("processQueryKey is required")
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise _Invalid("userIds must be a list of user ids")
    fake.mark_read(key, *users)
    return json_response({"processQueryKey": key, "userIds": users})
