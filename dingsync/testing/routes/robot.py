"""The enterprise robot's OpenAPI (reference/openapi.md §3): sends, recalls, read status.

Validation follows §3 and §12.6: header token; ``robotCode`` must equal the app's client id;
``msgKey`` one of the 13 keys; ``msgParam`` a JSON *string* whose keys are exactly the §3.6
schema of the key (so typos in a client fail loudly) with string values; 1-20 ``userIds``;
a group ``msgParam`` of at most 15,000 bytes. Codes are the documented ``invalidParameter.*``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, List, Optional, Tuple

from .._http import Request, Response, json_response, new_error, route
from .._openapi import SentMessage, json_object, random_key

if TYPE_CHECKING:
    from .._fake import FakeDingTalk

__all__: List[str] = []


def _keys(*names: str) -> FrozenSet[str]:
    return frozenset(names)


def _action(n: int) -> FrozenSet[str]:
    names = ["title", "text"]
    for i in range(1, n + 1):
        names += [f"actionTitle{i}", f"actionURL{i}"]
    return frozenset(names)


# msgKey -> (required keys, optional keys), openapi.md §3.6
SCHEMA: Dict[str, Tuple[FrozenSet[str], FrozenSet[str]]] = {
    "sampleText": (_keys("content"), _keys()),
    "sampleMarkdown": (_keys("title", "text"), _keys()),
    "sampleImageMsg": (_keys("photoURL"), _keys()),
    "sampleLink": (_keys("text", "title", "picUrl", "messageUrl"), _keys()),
    "sampleActionCard": (_keys("title", "text", "singleTitle", "singleURL"), _keys()),
    "sampleActionCard2": (_action(2), _keys()),
    "sampleActionCard3": (_action(3), _keys()),
    "sampleActionCard4": (_action(4), _keys()),
    "sampleActionCard5": (_action(5), _keys()),
    "sampleActionCard6": (
        _keys("title", "text", "buttonTitle1", "buttonUrl1", "buttonTitle2", "buttonUrl2"),
        _keys(),
    ),
    "sampleAudio": (_keys("mediaId", "duration"), _keys()),
    "sampleFile": (_keys("mediaId", "fileName", "fileType"), _keys()),
    "sampleVideo": (
        _keys("duration", "videoMediaId", "videoType", "picMediaId"),
        _keys("height", "width"),
    ),
}
MAX_USERS = 20
MAX_GROUP_PARAM = 15_000


def _bad(code: str, message: str) -> Response:
    return new_error(400, code, message)


def check_message(body: Dict[str, Any]) -> Tuple[Optional[Response], Dict[str, Any]]:
    """Validate ``msgKey``/``msgParam``; returns (error, decoded msgParam)."""
    key = body.get("msgKey")
    if not key:
        return _bad("invalidParameter.msgKey.empty", "msgKey is empty"), {}
    if key not in SCHEMA:
        return _bad("invalidParameter.msgKey.invalid", f"msgKey {key} is invalid"), {}
    raw = body.get("msgParam")
    if not isinstance(raw, str):
        return _bad("invalidParameter.msgParam.invalid", "The msgParam must be in JSON format"), {}
    try:
        param = json.loads(raw)
    except ValueError:
        return _bad("invalidParameter.msgParam.invalid", "The msgParam must be in JSON format"), {}
    if not isinstance(param, dict):
        return _bad("invalidParameter.msgParam.invalid", "The msgParam must be in JSON format"), {}
    required, optional = SCHEMA[key]
    missing = sorted(required - param.keys())
    unknown = sorted(param.keys() - required - optional)
    if missing or unknown:
        return (
            _bad(
                "invalidParameter.param.invalid",
                f"msgParam of {key}: missing {missing}, unexpected {unknown}",
            ),
            {},
        )
    not_str = sorted(k for k, v in param.items() if not isinstance(v, str))
    if not_str:
        return _bad(
            "invalidParameter.param.invalid", f"msgParam values must be strings: {not_str}"
        ), {}
    return None, param


def check_robot(fake: FakeDingTalk, body: Dict[str, Any]) -> Optional[Response]:
    code = body.get("robotCode")
    if not code:
        return _bad("invalidParameter.robotCode.empty", "robotCode is empty")
    if code != fake.client_id:
        return _bad("invalidParameter.robotCode.auth", "robotCode does not match the app's appkey")
    return None


def _authed_body(fake: FakeDingTalk, request: Request) -> Tuple[Optional[Response], Dict[str, Any]]:
    error = fake.check_new_auth(request)
    if error is not None:
        return error, {}
    body, error = json_object(request)
    if error is not None or body is None:
        return error, {}
    return None, body


@route("api", "POST", "/v1.0/robot/oToMessages/batchSend")
def batch_send(fake: FakeDingTalk, request: Request) -> Response:
    error, body = _authed_body(fake, request)
    if error is not None:
        return error
    error = check_robot(fake, body)
    if error is not None:
        return error
    users = body.get("userIds")
    if not users:
        return _bad("invalidParameter.userIds.empty", "userIds is empty")
    if not isinstance(users, list) or not all(isinstance(u, str) and u for u in users):
        return _bad("invalidParameter.param.invalid", "userIds must be a list of strings")
    if len(users) > MAX_USERS:
        return _bad(
            "invalidParameter.userIds.overMax", f"userIds exceeds the maximum of {MAX_USERS}"
        )
    error, param = check_message(body)
    if error is not None:
        return error
    with fake._lock:
        invalid = [u for u in users if u in fake.invalid_users]
        throttled = [u for u in users if u in fake.flow_controlled_users and u not in invalid]
        delivered = tuple(u for u in users if u not in invalid and u not in throttled)
        key = random_key()
        fake.sent.append(
            SentMessage(
                kind="oto",
                robot_code=body["robotCode"],
                msg_key=body["msgKey"],
                msg_param=param,
                process_query_key=key,
                at=fake.now(),
                user_ids=tuple(users),
                delivered_to=delivered,
            )
        )
    return json_response(
        {
            "processQueryKey": key,
            "invalidStaffIdList": invalid,
            "flowControlledStaffIdList": throttled,
            "filteredStaffIdList": [],
        }
    )


def _group_send(fake: FakeDingTalk, request: Request, kind: str) -> Response:
    error, body = _authed_body(fake, request)
    if error is not None:
        return error
    error = check_robot(fake, body)
    if error is not None:
        return error
    cid = body.get("openConversationId")
    if not cid and not body.get("token"):
        return _bad("openConversationId.notExisted", "openConversationId不能和token同时为空")
    if cid and (not isinstance(cid, str) or not fake.knows_conversation(cid)):
        # The robot is not in such a conversation (or it does not exist): DingTalk's code
        # from the robot API's error table (apifox mirror cited in reference/openapi.md §3.5).
        return _bad("invalid.openConversationId", "无效的openConversationId")
    if kind == "private" and not body.get("coolAppCode"):
        return _bad("invalidParameter.coolAppCode.empty", "coolAppCode is empty")
    error, param = check_message(body)
    if error is not None:
        return error
    size = len(body["msgParam"].encode("utf-8"))
    if size > MAX_GROUP_PARAM:
        return _bad(
            "invalidParameter.msgParam.overMax",
            f"msgParam is {size} bytes; the maximum is {MAX_GROUP_PARAM}",
        )
    key = random_key()
    with fake._lock:
        fake.sent.append(
            SentMessage(
                kind=kind,
                robot_code=body["robotCode"],
                msg_key=body["msgKey"],
                msg_param=param,
                process_query_key=key,
                at=fake.now(),
                open_conversation_id=cid,
            )
        )
    return json_response({"processQueryKey": key})


@route("api", "POST", "/v1.0/robot/groupMessages/send")
def group_send(fake: FakeDingTalk, request: Request) -> Response:
    return _group_send(fake, request, "group")


@route("api", "POST", "/v1.0/robot/privateChatMessages/send")
def private_send(fake: FakeDingTalk, request: Request) -> Response:
    return _group_send(fake, request, "private")


def _recall(fake: FakeDingTalk, request: Request, *, kind: str) -> Response:
    error, body = _authed_body(fake, request)
    if error is not None:
        return error
    error = check_robot(fake, body)
    if error is not None:
        return error
    keys = body.get("processQueryKeys")
    if not isinstance(keys, list) or not keys:
        return _bad("invalidParameter.processQueryKeys.empty", "processQueryKeys is empty")
    cid = body.get("openConversationId")
    in_chat = kind != "oto"
    if in_chat and not cid:
        return _bad("invalidParameter.openConversationId.empty", "openConversationId is empty")
    succeeded: List[str] = []
    failed: Dict[str, str] = {}
    with fake._lock:
        by_key = {m.process_query_key: m for m in fake.sent}
        for key in keys:
            message = by_key.get(key)
            if (
                message is None
                or message.kind != kind
                or (in_chat and message.open_conversation_id != cid)
            ):
                failed[str(key)] = "processQueryKey not found"
            elif message.recalled:
                failed[str(key)] = "message already recalled"
            else:
                message.recalled = True
                succeeded.append(key)
    return json_response({"successResult": succeeded, "failedResult": failed})


@route("api", "POST", "/v1.0/robot/otoMessages/batchRecall")
def oto_recall(fake: FakeDingTalk, request: Request) -> Response:
    return _recall(fake, request, kind="oto")


@route("api", "POST", "/v1.0/robot/groupMessages/recall")
def group_recall(fake: FakeDingTalk, request: Request) -> Response:
    return _recall(fake, request, kind="group")


@route("api", "POST", "/v1.0/robot/privateChatMessages/batchRecall")
def private_recall(fake: FakeDingTalk, request: Request) -> Response:
    return _recall(fake, request, kind="private")


def _find(fake: FakeDingTalk, key: Any) -> Optional[SentMessage]:
    with fake._lock:
        return next((m for m in fake.sent if m.process_query_key == key), None)


@route("api", "GET", "/v1.0/robot/oToMessages/readStatus")
def read_status(fake: FakeDingTalk, request: Request) -> Response:
    error = fake.check_new_auth(request)
    if error is not None:
        return error
    error = check_robot(fake, dict(request.query))
    if error is not None:
        return error
    message = _find(fake, request.query.get("processQueryKey"))
    if message is None or message.kind != "oto":
        return _bad("invalid.processQueryKey", "processQueryKey is invalid")
    reads = fake._read.get(message.process_query_key, {})
    info = [
        {
            "name": user,
            "userId": user,
            "readStatus": "READ" if user in reads else "UNREAD",
            "readTimestamp": int(reads[user] * 1000) if user in reads else None,
        }
        for user in message.delivered_to
    ]
    return json_response({"sendStatus": "SUCCESS", "messageReadInfoList": info})


@route("api", "POST", "/v1.0/robot/groupMessages/query")
def group_query(fake: FakeDingTalk, request: Request) -> Response:
    return _chat_query(fake, request, kind="group")


@route("api", "POST", "/v1.0/robot/privateChatMessages/query")
def private_query(fake: FakeDingTalk, request: Request) -> Response:
    return _chat_query(fake, request, kind="private")


def _chat_query(fake: FakeDingTalk, request: Request, *, kind: str) -> Response:
    """Read status of a group or private-chat message, paged (``maxResults`` ≤ 200)."""
    error, body = _authed_body(fake, request)
    if error is not None:
        return error
    message = _find(fake, body.get("processQueryKey"))
    if message is None or message.kind != kind:
        return _bad("invalid.processQueryKey", "processQueryKey is invalid")
    limit = body.get("maxResults", 200)
    if not isinstance(limit, int) or not 1 <= limit <= 200:
        return _bad("invalidParameter.pageSize.invalid", "maxResults must be 1..200")
    token = body.get("nextToken") or "0"
    if not isinstance(token, str) or not token.isascii() or not token.isdigit():
        # Only tokens this emulator handed out are valid: a 400 like any bad parameter.
        return _bad("invalidParameter.param.invalid", "nextToken is invalid")
    readers = sorted(fake._read.get(message.process_query_key, {}))
    start = int(token)
    page = readers[start : start + limit]
    more = start + limit < len(readers)
    answer: Dict[str, Any] = {
        "sendStatus": "SUCCESS",
        "readUserIds": page,
        "hasMore": more,
        "nextToken": str(start + limit) if more else "",
    }
    if kind == "group":  # the private-chat query has no readUsers (openapi.md §3.5)
        answer["readUsers"] = [{"userId": u, "unionId": f"union-{u}"} for u in page]
    return json_response(answer)
