"""The Stream gateway's ticket endpoint: ``POST /v1.0/gateway/connections/open`` (protocol.md §1).

A well-formed body is ``{clientId, clientSecret, subscriptions: [{type, topic}], ua?, localIp?,
extras?}``; ``ua``, ``localIp`` and ``extras`` may be null (the Go SDK sends ``"extras": null``).
Types EVENT, CALLBACK and SYSTEM are accepted (Go subscribes to its SYSTEM routes); EVENT only
with topic ``"*"``. Bad credentials: HTTP 401 ``authFailed``/``鉴权失败``. A malformed body: 400
with the new-style ``{code, message, requestid}`` envelope. Success: ``{endpoint, ticket}`` with an
explicit port and the ``/connect`` path, which the Java SDK needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from .._http import BadJson, Request, Response, json_response, new_error, route
from .._records import OpenRequest, Subscription

if TYPE_CHECKING:
    from .._fake import FakeDingTalk

PATH = "/v1.0/gateway/connections/open"
_TYPES = ("EVENT", "CALLBACK", "SYSTEM")


def _parse(body: Any) -> Tuple[Optional[str], List[Subscription]]:
    """Return (problem, subscriptions); problem names the offending field."""
    if not isinstance(body, dict):
        return "body must be a JSON object", []
    for name in ("clientId", "clientSecret"):
        if not isinstance(body.get(name), str) or not body[name]:
            return f"{name} is mandatory and must be a non-empty string", []
    raw = body.get("subscriptions")
    if not isinstance(raw, list):
        return "subscriptions is mandatory and must be a list", []
    subs: List[Subscription] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            return f"subscriptions[{i}] must be an object", []
        type_, topic = item.get("type"), item.get("topic")
        if type_ not in _TYPES:
            return f"subscriptions[{i}].type must be one of {', '.join(_TYPES)}", []
        if not isinstance(topic, str) or not topic:
            return f"subscriptions[{i}].topic must be a non-empty string", []
        if type_ == "EVENT" and topic != "*":
            return f"subscriptions[{i}].topic: EVENT subscriptions support only '*'", []
        subs.append(Subscription(type=type_, topic=topic))
    for name in ("ua", "localIp"):
        if body.get(name) is not None and not isinstance(body[name], str):
            return f"{name} must be a string", []
    if body.get("extras") is not None and not isinstance(body["extras"], dict):
        return "extras must be an object", []
    return None, subs


@route("api", "POST", PATH)
def open_connection(fake: FakeDingTalk, request: Request) -> Response:
    if not request.body:
        return new_error(400, "Missingbody", "body is mandatory for this action")
    try:
        body = request.json()
    except BadJson:
        return new_error(400, "InvalidParameter", "body is not valid JSON")
    problem, subs = _parse(body)
    if problem is not None:
        return new_error(400, "InvalidParameter", problem)
    ok = body["clientId"] == fake.client_id and body["clientSecret"] == fake.client_secret
    record = OpenRequest(
        client_id=body["clientId"],
        subscriptions=tuple(subs),
        ua=body.get("ua"),
        local_ip=body.get("localIp"),
        extras=body.get("extras"),
        user_agent=request.header("user-agent"),
        status=200 if ok else 401,
        at=request.at,
    )
    ticket = fake._record_open(record, issue=ok)
    if ticket is None:
        return new_error(401, "authFailed", "鉴权失败")
    return json_response({"endpoint": fake.ws_endpoint, "ticket": ticket})
