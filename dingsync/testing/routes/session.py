"""Session webhook replies: ``POST /robot/sendBySession?session=...`` on the oapi host.

Every chatbot message pushed by the emulator carries one of these URLs (reference/openapi.md §4).
No token: the URL is the credential. The body is a custom-robot message whose ``msgtype`` is one of
text, markdown, actionCard, feedCard, link; anything else is ``400105 不支持的消息类型``. An unknown
or expired session (emulator clock) is ``300001 session 不存在``. Like every oapi answer these are
HTTP 200 with an ``errcode``. A missing field is ``40035 缺少参数 <field>`` (DingTalk's generic
missing-parameter code; the exact code for this route is not documented).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

from .._http import BadJson, Request, Response, json_response, old_error, route

if TYPE_CHECKING:
    from .._fake import FakeDingTalk


def _str_fields(part: Any, *names: str) -> Optional[str]:
    if not isinstance(part, dict):
        return names[0]
    for name in names:
        if not isinstance(part.get(name), str) or not part[name]:
            return name
    return None


def _missing(body: Dict[str, Any]) -> Optional[str]:
    """The first missing field of the body's msgtype (``text.content``...), or None."""
    msgtype = str(body["msgtype"])
    part = body.get(msgtype)
    if not isinstance(part, dict):
        return msgtype
    if msgtype == "text":
        field = _str_fields(part, "content")
    elif msgtype == "markdown":
        field = _str_fields(part, "title", "text")
    elif msgtype == "link":
        field = _str_fields(part, "title", "text", "messageUrl")
    elif msgtype == "actionCard":
        field = _str_fields(part, "title", "text")
        if field is None and "btns" in part:
            btns = part["btns"]
            if not isinstance(btns, list) or not btns:
                field = "btns"
            else:
                bad = next((b for b in btns if _str_fields(b, "title", "actionURL")), None)
                field = "btns.title/actionURL" if bad is not None else None
        elif field is None:
            field = _str_fields(part, "singleTitle", "singleURL")
    else:  # feedCard
        links = part.get("links")
        if not isinstance(links, list) or not links:
            return "feedCard.links"
        bad = next((x for x in links if _str_fields(x, "title", "messageURL", "picURL")), None)
        field = "links.title/messageURL/picURL" if bad is not None else None
    return None if field is None else f"{msgtype}.{field}"


@route("oapi", "POST", "/robot/sendBySession")
def send_by_session(fake: FakeDingTalk, request: Request) -> Response:
    state, session = fake._session_state(request.query.get("session"))
    if session is None or state != "ok":
        return old_error(300001, "session 不存在")
    if "json" not in (request.header("content-type") or ""):
        return old_error(43004, "无效的HTTP HEADER Content-Type")
    try:
        body = request.json()
    except BadJson:
        return old_error(40035, "缺少参数 json")
    if not isinstance(body, dict):
        return old_error(40035, "缺少参数 json")
    if body.get("msgtype") not in ("text", "markdown", "actionCard", "feedCard", "link"):
        return old_error(400105, "不支持的消息类型")
    missing = _missing(body)
    if missing is not None:
        return old_error(40035, f"缺少参数 {missing}")
    at = body.get("at")
    if at is not None and not isinstance(at, dict):
        return old_error(40035, "缺少参数 at")
    fake._record_reply(session, body)
    return json_response({"errcode": 0, "errmsg": "ok"})
