"""The emulator's HTTP plumbing: requests, responses, the route table and DingTalk's error envelopes.

Route modules (``dingsync/testing/routes/*.py``) register handlers with :func:`route`; a handler
receives the running :class:`~dingsync.testing.FakeDingTalk` and a :class:`Request` and returns a
:class:`Response`. Two virtual hosts exist, as at DingTalk: ``"api"`` (api.dingtalk.com, new-style
JSON API, header token) and ``"oapi"`` (oapi.dingtalk.com, old-style API, query token, HTTP 200
for every answer).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Tuple, Union

import attrs

if TYPE_CHECKING:
    from ._fake import FakeDingTalk

__all__ = [
    "Request",
    "Response",
    "Handler",
    "route",
    "find_route",
    "json_response",
    "new_error",
    "old_error",
    "request_id",
]

Host = str  # "api" | "oapi"
Write = Callable[[bytes], None]


class BadJson(Exception):
    """The request body is not the JSON a route expects."""


@attrs.frozen
class Request:
    """One HTTP request as the emulator saw it (recorded in ``FakeDingTalk.requests``)."""

    host: Host
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes = attrs.field(repr=False)
    at: float = 0.0

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """Decode the body as JSON; raise BadJson when it is not."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadJson(str(exc)) from exc


@attrs.frozen
class Response:
    """What a route answers. ``body`` is bytes; use :func:`json_response` for JSON.

    ``stream``, when set, replaces ``body``: it is called with a ``write(bytes)`` that sends and
    flushes a chunk at once, and the connection closes when it returns (Server-Sent Events).
    """

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    content_type: str = "application/json;charset=utf-8"
    stream: Optional[Callable[[Write], None]] = attrs.field(default=None, repr=False)


Handler = Callable[["FakeDingTalk", Request], Response]

_ROUTES: Dict[Tuple[Host, str, str], Handler] = {}
_PREFIX_ROUTES: Dict[Tuple[Host, str, str], Handler] = {}


def route(
    host: Host, method: str, path: str, *, prefix: bool = False
) -> Callable[[Handler], Handler]:
    """Register a handler for ``method path`` on ``host`` (``prefix=True`` matches sub-paths)."""

    def register(func: Handler) -> Handler:
        key = (host, method.upper(), path)
        table = _PREFIX_ROUTES if prefix else _ROUTES
        if key in table:
            raise RuntimeError(f"route {key} registered twice")
        table[key] = func
        return func

    return register


def find_route(host: Host, method: str, path: str) -> Optional[Handler]:
    handler = _ROUTES.get((host, method, path))
    if handler is not None:
        return handler
    for (h, m, p), func in _PREFIX_ROUTES.items():
        if h == host and m == method and path.startswith(p):
            return func
    return None


def request_id() -> str:
    return str(uuid.uuid4()).upper()


def json_response(
    obj: Any, status: int = 200, headers: Optional[Mapping[str, str]] = None
) -> Response:
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return Response(status=status, body=body, headers=dict(headers or {}))


def new_error(status: int, code: str, message: str, **extra: Any) -> Response:
    """The new-style API's error envelope: ``{code, message, requestid}`` + ``x-acs-request-id``."""
    rid = request_id()
    body: Dict[str, Any] = {"requestid": rid, "code": code, "message": message}
    body.update(extra)
    return json_response(
        body, status, {"x-acs-request-id": rid, "x-acs-trace-id": uuid.uuid4().hex}
    )


def old_error(errcode: Union[int, str], errmsg: str, **extra: Any) -> Response:
    """The old-style API's error envelope: always HTTP 200 with a non-zero ``errcode``."""
    body: Dict[str, Any] = {"errcode": errcode, "errmsg": errmsg}
    body.update(extra)
    body.setdefault("request_id", uuid.uuid4().hex[:16])
    return json_response(body, 200)
