"""Custom group robots: ``POST /robot/send?access_token=<token>[&timestamp=&sign=]`` (oapi host).

Behaviour from reference/openapi.md §5 and §12.9, all answers HTTP 200 with an ``errcode``:

* unknown token: ``300005 token is not exist`` (what a live probe returned);
* security (``310000``, told apart by errmsg): ``ip 127.0.0.1 not in whitelist``,
  ``invalid timestamp`` (outside ±1 h of the emulator clock), ``sign not match``,
  ``keywords not in content``;
* the five msgtypes only (``400105``), required fields (``40035``);
* ``msgUuid`` seen before: answered ok, not delivered again;
* more than ``fake.webhook_rate_limit`` (20) messages in 60 s of emulator time: ``410100`` and the
  robot stays throttled for ``fake.webhook_penalty`` (600) seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from .._http import BadJson, Request, Response, json_response, old_error, route
from .._openapi import WebhookMessage

if TYPE_CHECKING:
    from .._fake import FakeDingTalk

__all__: List[str] = []

MSGTYPES = ("text", "markdown", "link", "actionCard", "feedCard")
SIGN_WINDOW_MS = 3600 * 1000
CLIENT_IP = "127.0.0.1"


def expected_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _strings(part: Any, *names: str) -> Optional[str]:
    if not isinstance(part, dict):
        return "body"
    return next((n for n in names if not isinstance(part.get(n), str) or not part[n]), None)


def _missing(body: Dict[str, Any]) -> Optional[str]:
    msgtype = body["msgtype"]
    part = body.get(msgtype)
    if msgtype == "text":
        return _strings(part, "content")
    if msgtype == "markdown":
        return _strings(part, "title", "text")
    if msgtype == "link":
        return _strings(part, "title", "text", "messageUrl")
    if msgtype == "actionCard":
        missing = _strings(part, "title", "text")
        if missing or not isinstance(part, dict):
            return missing
        if "btns" in part:
            btns = part["btns"]
            if not isinstance(btns, list) or not btns:
                return "btns"
            return next(("btns" for b in btns if _strings(b, "title", "actionURL")), None)
        return _strings(part, "singleTitle", "singleURL")
    links = part.get("links") if isinstance(part, dict) else None
    if not isinstance(links, list) or not links:
        return "links"
    return next(("links" for x in links if _strings(x, "title", "messageURL", "picURL")), None)


def _visible_text(body: Dict[str, Any]) -> str:
    part = body.get(body["msgtype"]) or {}
    texts: List[str] = []
    for key in ("content", "title", "text", "singleTitle"):
        if isinstance(part.get(key), str):
            texts.append(part[key])
    for item in part.get("btns") or part.get("links") or ():
        if isinstance(item, dict) and isinstance(item.get("title"), str):
            texts.append(item["title"])
    return "\n".join(texts)


def _security(robot: Any, fake: FakeDingTalk, request: Request) -> Optional[str]:
    """The 310000 errmsg when a security setting refuses the request."""
    if robot.ip_whitelist is not None and CLIENT_IP not in robot.ip_whitelist:
        return f"ip {CLIENT_IP} not in whitelist"
    if robot.secret is None:
        return None
    timestamp = request.query.get("timestamp", "")
    if not timestamp.isdigit() or abs(int(timestamp) - fake.now_ms()) > SIGN_WINDOW_MS:
        return "invalid timestamp"
    sign = request.query.get("sign", "")
    if not hmac.compare_digest(sign, expected_sign(robot.secret, timestamp)):
        return "sign not match"
    return None


def _reject(fake: FakeDingTalk, errcode: int, errmsg: str) -> Response:
    with fake._lock:
        fake.webhook_rejections.append((errcode, errmsg))
    return old_error(errcode, errmsg)


@route("oapi", "POST", "/robot/send")
def robot_send(fake: FakeDingTalk, request: Request) -> Response:
    token = request.query.get("access_token", "")
    robot = fake.webhook_robots.get(token)
    if robot is None:
        return _reject(fake, 300005, "token is not exist")
    if "json" not in (request.header("content-type") or ""):
        return _reject(fake, 43004, "无效的HTTP HEADER Content-Type")
    try:
        body = request.json()
    except BadJson:
        return _reject(fake, 40035, "缺少参数 json")
    if not isinstance(body, dict):
        return _reject(fake, 40035, "缺少参数 json")
    now = fake.now()
    with fake._lock:
        if robot.penalty_until > now:
            robot.throttled += 1
            return _reject(fake, 410100, "发送速度太快而限流")
    refusal = _security(robot, fake, request)
    if refusal is not None:
        return _reject(fake, 310000, refusal)
    if body.get("msgtype") not in MSGTYPES:
        return _reject(fake, 400105, "不支持的消息类型")
    missing = _missing(body)
    if missing is not None:
        return _reject(fake, 40035, f"缺少参数 {missing}")
    if robot.keywords and not any(k in _visible_text(body) for k in robot.keywords):
        return _reject(fake, 310000, "keywords not in content")
    msg_uuid = body.get("msgUuid")
    with fake._lock:
        if isinstance(msg_uuid, str) and msg_uuid in robot.uuids:
            return json_response({"errcode": 0, "errmsg": "ok"})
        while robot.accepted_at and robot.accepted_at[0] <= now - 60.0:
            robot.accepted_at.popleft()
        if len(robot.accepted_at) >= fake.webhook_rate_limit:
            robot.penalty_until = now + fake.webhook_penalty
            robot.throttled += 1
            return _reject(fake, 410100, "发送速度太快而限流")
        robot.accepted_at.append(now)
        if isinstance(msg_uuid, str):
            robot.uuids.add(msg_uuid)
        fake.webhook_messages.append(
            WebhookMessage(
                token=token,
                msgtype=body["msgtype"],
                body=body,
                at=now,
                msg_uuid=msg_uuid if isinstance(msg_uuid, str) else None,
            )
        )
    return json_response({"errcode": 0, "errmsg": "ok"})
