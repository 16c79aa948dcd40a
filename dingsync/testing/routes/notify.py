"""Work notifications (oapi host; reference/openapi.md §6, §12.11).

``asyncsend_v2`` takes ``agent_id``, a comma-separated ``userid_list`` (or ``dept_id_list`` /
``to_all_user``) and a snake_case ``msg``; it always "succeeds" with a ``task_id``. As at
DingTalk, the drops only show in ``getsendresult``: unknown users (``fake.mark_users_invalid``)
in ``invalid_user_id_list``; the same content to the same user on the same day (emulator clock)
and more than ``fake.notify_daily_limit`` notices per user per day in ``forbidden_user_id_list``
with ``forbidden_list`` codes 143106 / 143105.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from .._http import BadJson, Request, Response, json_response, old_error, route
from .._openapi import WorkNotice

if TYPE_CHECKING:
    from .._fake import FakeDingTalk

__all__: List[str] = []

MAX_RECIPIENTS = 5000
REQUIRED: Dict[str, Tuple[str, ...]] = {
    "text": ("content",),
    "image": ("media_id",),
    "voice": ("media_id", "duration"),
    "file": ("media_id",),
    "link": ("messageUrl", "picUrl", "title", "text"),
    "markdown": ("title", "text"),
    "action_card": ("title", "markdown"),
    "oa": ("head", "body"),
}


def _body(fake: FakeDingTalk, request: Request) -> Tuple[Optional[Response], Dict[str, Any]]:
    error = fake.check_old_auth(request)
    if error is not None:
        return error, {}
    try:
        body = request.json()
    except BadJson:
        return old_error(40035, "缺少参数 json"), {}
    if not isinstance(body, dict):
        return old_error(40035, "缺少参数 json"), {}
    agent = body.get("agent_id")
    if isinstance(agent, str) and agent.isdigit():
        agent = int(agent)
    if not isinstance(agent, int) or isinstance(agent, bool):
        return old_error(40035, "缺少参数 agent_id"), {}
    body["agent_id"] = agent
    return None, body


def _check_msg(msg: Any) -> Optional[str]:
    """The first missing part of ``msg`` (``msg.text.content``...), or None."""
    if not isinstance(msg, dict) or msg.get("msgtype") not in REQUIRED:
        return "msg.msgtype"
    msgtype = msg["msgtype"]
    part = msg.get(msgtype)
    if not isinstance(part, dict):
        return f"msg.{msgtype}"
    for name in REQUIRED[msgtype]:
        if part.get(name) in (None, ""):
            return f"msg.{msgtype}.{name}"
    if msgtype == "action_card" and not (
        (part.get("single_title") and part.get("single_url")) or part.get("btn_json_list")
    ):
        return "msg.action_card.single_title"
    return None


def _split(value: Any) -> Tuple[str, ...]:
    if not isinstance(value, str):
        return ()
    return tuple(x.strip() for x in value.split(",") if x.strip())


@route("oapi", "POST", "/topapi/message/corpconversation/asyncsend_v2")
def asyncsend_v2(fake: FakeDingTalk, request: Request) -> Response:
    error, body = _body(fake, request)
    if error is not None:
        return error
    missing = _check_msg(body.get("msg"))
    if missing is not None:
        return old_error(40035, f"缺少参数 {missing}")
    users = _split(body.get("userid_list"))
    depts = _split(body.get("dept_id_list"))
    to_all = bool(body.get("to_all_user"))
    if not (users or depts or to_all):
        return old_error(40035, "缺少参数 userid_list")
    if len(users) > MAX_RECIPIENTS:
        return old_error(40035, f"userid_list 超过 {MAX_RECIPIENTS} 人")
    msg = body["msg"]
    content = json.dumps(msg, sort_keys=True, ensure_ascii=False)
    now = fake.now()
    day = int(now // 86400)
    invalid: List[str] = []
    forbidden: List[Dict[str, Any]] = []
    delivered: List[str] = []
    with fake._lock:
        today = [n for n in fake.work_notices if int(n.at // 86400) == day]
        for user in dict.fromkeys(users):
            if user in fake.invalid_users:
                invalid.append(user)
                continue
            received = [n for n in today if user in n.delivered_to]
            if any(
                json.dumps(n.msg, sort_keys=True, ensure_ascii=False) == content for n in received
            ):
                forbidden.append({"code": "143106", "count": 1, "userid": user})
            elif len(received) >= fake.notify_daily_limit:
                forbidden.append({"code": "143105", "count": len(received), "userid": user})
            else:
                delivered.append(user)
        task = WorkNotice(
            task_id=fake._new_task_id(),
            agent_id=body["agent_id"],
            msg=msg,
            user_ids=users,
            dept_ids=depts,
            to_all=to_all,
            at=now,
            delivered_to=tuple(delivered),
            result={
                "invalid_user_id_list": invalid,
                "forbidden_user_id_list": [f["userid"] for f in forbidden],
                "failed_user_id_list": [],
                "read_user_id_list": [],
                "unread_user_id_list": delivered,
                "invalid_dept_id_list": [],
                "forbidden_list": forbidden,
            },
        )
        fake.work_notices.append(task)
    return json_response(
        {"errcode": 0, "errmsg": "ok", "task_id": task.task_id, "request_id": "fake-request"}
    )


@route("oapi", "POST", "/topapi/message/corpconversation/getsendresult")
def getsendresult(fake: FakeDingTalk, request: Request) -> Response:
    error, body = _body(fake, request)
    if error is not None:
        return error
    task_id = body.get("task_id")
    if not isinstance(task_id, int):
        return old_error(40035, "缺少参数 task_id")
    with fake._lock:
        task = next((n for n in fake.work_notices if n.task_id == task_id), None)
        if task is None or task.agent_id != body["agent_id"]:
            return old_error(40035, "不合法的参数 task_id")
        if fake.now() - task.at > 86400:
            return old_error(40035, "只能查询24小时内的任务")
        result = dict(task.result)
    return json_response({"errcode": 0, "errmsg": "ok", "send_result": result})
