"""The enterprise-internal robot: send to users and groups, recall, read status, file downloads.

Wraps reference/openapi.md §3 (``/v1.0/robot/...``, header token). Sends are not idempotent at
DingTalk (no idempotency key), so a send that timed out after it went out raises
``RequestTimeout(maybe_sent=True)`` instead of being repeated blindly.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import attrs

from ..errors import ApiError, ConfigurationError, DingSyncError
from ..limits import LIMITS, check_size
from ..messages import MessageLike, as_message
from ..metrics import counting
from ._http import HttpCore

__all__ = [
    "RobotApi",
    "BatchSendResult",
    "RecallResult",
    "ReadStatus",
    "ReadInfo",
    "ConversationReadStatus",
    "MAX_USERS_PER_CALL",
    "MAX_GROUP_PARAM_BYTES",
]

logger = logging.getLogger(__name__)

MAX_USERS_PER_CALL = 20
MAX_GROUP_PARAM_BYTES = LIMITS["robot group"]

Progress = Callable[[int, Optional[int]], Any]


def _strings(value: Any) -> Tuple[str, ...]:
    return tuple(str(x) for x in value or ())


def _tuple(value: Iterable[str]) -> Tuple[str, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class BatchSendResult:
    """What ``send_to_users`` did, including the users DingTalk did *not* deliver to.

    A user in ``flow_controlled_user_ids`` was rate-limited and did not get the message even
    though the call succeeded; ``invalid_user_ids`` are unknown ids. After a failure (the
    exception's ``partial``), ``maybe_sent_user_ids`` is the chunk whose call may have reached
    DingTalk (a timeout, a dropped connection, a proxy's 5xx) and ``unsent_user_ids`` the users
    no call was made for.

    Example:
        >>> r = BatchSendResult(
        ...     process_query_keys=("k",), sent_user_ids=("a", "x"), invalid_user_ids=("x",))
        >>> r.all_delivered, r.delivered_user_ids
        (False, ('a',))
    """

    process_query_keys: Tuple[str, ...] = attrs.field(converter=_tuple)
    invalid_user_ids: Tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    flow_controlled_user_ids: Tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    filtered_user_ids: Tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    unsent_user_ids: Tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    sent_user_ids: Tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    maybe_sent_user_ids: Tuple[str, ...] = attrs.field(default=(), converter=_tuple)

    @property
    def delivered_user_ids(self) -> Tuple[str, ...]:
        """The users DingTalk accepted the message for, in the order given."""
        refused = set(
            self.invalid_user_ids + self.flow_controlled_user_ids + self.filtered_user_ids
        )
        return tuple(u for u in self.sent_user_ids if u not in refused)

    @property
    def all_delivered(self) -> bool:
        """True when DingTalk accepted every recipient."""
        return not (
            self.invalid_user_ids
            or self.flow_controlled_user_ids
            or self.filtered_user_ids
            or self.unsent_user_ids
            or self.maybe_sent_user_ids
        )


@attrs.frozen(kw_only=True)
class RecallResult:
    """Which process query keys were recalled, and why the others were not."""

    succeeded: Tuple[str, ...] = attrs.field(converter=_tuple)
    failed: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ReadInfo:
    """One recipient's read state of a 1:1 message."""

    user_id: str
    name: str = ""
    read_status: str = ""
    read_timestamp: Optional[int] = None


@attrs.frozen(kw_only=True)
class ReadStatus:
    """The read state of a ``send_to_users`` message."""

    send_status: str
    users: Tuple[ReadInfo, ...] = ()

    @property
    def read_user_ids(self) -> Tuple[str, ...]:
        return tuple(u.user_id for u in self.users if u.read_status.lower() == "read")


@attrs.frozen(kw_only=True)
class ConversationReadStatus:
    """Who has read a group or private-chat message (every page, in the order DingTalk sent)."""

    send_status: str
    read_user_ids: Tuple[str, ...] = ()


MAX_READ_PAGE = 200


class RobotApi:
    """``api.robot``: the app robot's OpenAPI (``robotCode`` defaults to the client id).

    Example:
        >>> api.robot.send_to_group("cid123==", "nightly build ok")  # doctest: +SKIP
        'lGLr2W...'
    """

    def __init__(self, http: HttpCore, *, robot_code: str) -> None:
        self._http = http
        self.robot_code = robot_code

    def send_to_users(self, user_ids: Iterable[str], message: MessageLike) -> BatchSendResult:
        """Send a 1:1 message to users, 20 per call (DingTalk's limit).

        Duplicate ids are sent once. The result lists the ids DingTalk did not deliver to.

        Example:
            >>> result = api.robot.send_to_users(["manager593"], "hello")  # doctest: +SKIP
            >>> result.flow_controlled_user_ids  # doctest: +SKIP
            ()

        Raises:
            InvalidRequest: DingTalk rejected the message; nothing was sent in that call. When
                earlier chunks were sent, the exception's ``partial`` is a BatchSendResult whose
                ``unsent_user_ids`` did not get the message.
            RequestTimeout: ``maybe_sent=True``: the call may have gone out; not repeated.

            Any failure carries ``partial``: who got the message (``delivered_user_ids``), whose
            chunk may have gone out (``maybe_sent_user_ids``) and who was not sent to
            (``unsent_user_ids``).
        """
        if isinstance(user_ids, str):
            raise ConfigurationError("user_ids must be a list of user ids, not a single string")
        ids = list(dict.fromkeys(str(u) for u in user_ids))
        if not ids:
            raise ConfigurationError("user_ids is empty")
        msg_key, msg_param = as_message(message).to_openapi()
        check_size("robot 1:1", msg_param)
        keys: List[str] = []
        invalid: List[str] = []
        throttled: List[str] = []
        filtered: List[str] = []
        for start in range(0, len(ids), MAX_USERS_PER_CALL):
            chunk = ids[start : start + MAX_USERS_PER_CALL]
            try:
                with counting("robot_api"):
                    body = self._http.api(
                        "POST",
                        "/v1.0/robot/oToMessages/batchSend",
                        json={
                            "robotCode": self.robot_code,
                            "userIds": chunk,
                            "msgKey": msg_key,
                            "msgParam": msg_param,
                        },
                        idempotent=False,
                    )
            except DingSyncError as exc:
                # say exactly who got the message, who may have, and who did not
                maybe = bool(getattr(exc, "maybe_sent", False))
                exc.partial = BatchSendResult(
                    process_query_keys=keys,
                    invalid_user_ids=invalid,
                    flow_controlled_user_ids=throttled,
                    filtered_user_ids=filtered,
                    sent_user_ids=ids[:start],
                    maybe_sent_user_ids=chunk if maybe else (),
                    unsent_user_ids=ids[start + len(chunk) :] if maybe else ids[start:],
                )
                if keys or maybe:
                    logger.warning(
                        "send_to_users failed after %d of %d users were sent (%d may have been); "
                        "the exception's .partial lists who got the message",
                        start,
                        len(ids),
                        len(chunk) if maybe else 0,
                    )
                raise
            keys.append(str(body.get("processQueryKey", "")))
            invalid.extend(_strings(body.get("invalidStaffIdList")))
            throttled.extend(_strings(body.get("flowControlledStaffIdList")))
            filtered.extend(_strings(body.get("filteredStaffIdList")))
        if throttled:
            logger.warning(
                "%d users were flow-controlled and did not get the message", len(throttled)
            )
        return BatchSendResult(
            process_query_keys=keys,
            invalid_user_ids=invalid,
            flow_controlled_user_ids=throttled,
            filtered_user_ids=filtered,
            sent_user_ids=ids,
        )

    def send_to_group(
        self,
        open_conversation_id: str,
        message: MessageLike,
        *,
        cool_app_code: Optional[str] = None,
    ) -> str:
        """Send to a group the robot is in; returns the ``processQueryKey``.

        The OpenAPI has no @-mentions: a message with mentions raises MentionNotSupported
        (send it through a WebhookRobot or a session webhook instead).

        Example:
            >>> api.robot.send_to_group("cid123==", m.Markdown("Report", "all green"))  # doctest: +SKIP

        Raises:
            MessageTooLong: the message is over the 15,000-byte limit (nothing sent).
            MentionNotSupported: the message @-mentions someone (nothing sent).
        """
        return self._send_to_conversation(
            "/v1.0/robot/groupMessages/send", open_conversation_id, message, cool_app_code
        )

    def send_to_private_chat(
        self, open_conversation_id: str, message: MessageLike, *, cool_app_code: str
    ) -> str:
        """Send into a 1:1 chat between two people, through the app's direct-message cool app
        (DingTalk requires its ``coolAppCode`` there); returns the ``processQueryKey``.

        Example:
            >>> api.robot.send_to_private_chat("cidP2P==", "ping", cool_app_code="COOLAPP")  # doctest: +SKIP
            'lGLr2W...'

        Raises:
            ConfigurationError: no ``cool_app_code``, or the message is over 15,000 bytes
                (nothing sent).
        """
        _require(cool_app_code, "cool_app_code")
        return self._send_to_conversation(
            "/v1.0/robot/privateChatMessages/send", open_conversation_id, message, cool_app_code
        )

    def _send_to_conversation(
        self,
        path: str,
        open_conversation_id: str,
        message: MessageLike,
        cool_app_code: Optional[str],
    ) -> str:
        _require(open_conversation_id, "open_conversation_id")
        msg_key, msg_param = as_message(message).to_openapi()
        check_size("robot group" if "group" in path else "robot private chat", msg_param)
        payload: Dict[str, Any] = {
            "robotCode": self.robot_code,
            "openConversationId": open_conversation_id,
            "msgKey": msg_key,
            "msgParam": msg_param,
        }
        if cool_app_code:
            payload["coolAppCode"] = cool_app_code
        with counting("robot_api"):
            body = self._http.api("POST", path, json=payload, idempotent=False)
        return str(body.get("processQueryKey", ""))

    def recall_users(self, process_query_keys: Sequence[str]) -> RecallResult:
        """Recall 1:1 messages by their process query keys.

        Example:
            >>> api.robot.recall_users(result.process_query_keys)  # doctest: +SKIP
        """
        keys = _key_list(process_query_keys)
        body = self._http.api(
            "POST",
            "/v1.0/robot/otoMessages/batchRecall",
            json={"robotCode": self.robot_code, "processQueryKeys": keys},
        )
        return _recall(body)

    def recall_group(
        self, open_conversation_id: str, process_query_keys: Sequence[str]
    ) -> RecallResult:
        """Recall group messages by their process query keys.

        Example:
            >>> api.robot.recall_group("cid123==", [key])  # doctest: +SKIP
        """
        return self._recall_in(
            "/v1.0/robot/groupMessages/recall", open_conversation_id, process_query_keys
        )

    def recall_private_chat(
        self, open_conversation_id: str, process_query_keys: Sequence[str]
    ) -> RecallResult:
        """Recall private-chat messages by their process query keys.

        Example:
            >>> api.robot.recall_private_chat("cidP2P==", [key])  # doctest: +SKIP
        """
        return self._recall_in(
            "/v1.0/robot/privateChatMessages/batchRecall", open_conversation_id, process_query_keys
        )

    def _recall_in(
        self, path: str, open_conversation_id: str, process_query_keys: Sequence[str]
    ) -> RecallResult:
        _require(open_conversation_id, "open_conversation_id")
        body = self._http.api(
            "POST",
            path,
            json={
                "robotCode": self.robot_code,
                "openConversationId": open_conversation_id,
                "processQueryKeys": _key_list(process_query_keys),
            },
        )
        return _recall(body)

    def read_status(self, process_query_key: str) -> ReadStatus:
        """Who has read a ``send_to_users`` message.

        Example:
            >>> api.robot.read_status(result.process_query_keys[0]).read_user_ids  # doctest: +SKIP
        """
        _require(process_query_key, "process_query_key")
        body = self._http.api(
            "GET",
            "/v1.0/robot/oToMessages/readStatus",
            params={"processQueryKey": process_query_key, "robotCode": self.robot_code},
        )
        users = tuple(
            ReadInfo(
                user_id=str(item.get("userId", "")),
                name=str(item.get("name", "")),
                read_status=str(item.get("readStatus", "")),
                read_timestamp=item.get("readTimestamp"),
            )
            for item in body.get("messageReadInfoList") or ()
            if isinstance(item, dict)
        )
        return ReadStatus(send_status=str(body.get("sendStatus", "")), users=users)

    def group_read_status(
        self,
        process_query_key: str,
        *,
        open_conversation_id: Optional[str] = None,
        page_size: int = MAX_READ_PAGE,
    ) -> ConversationReadStatus:
        """Who has read a ``send_to_group`` message, every page of it.

        Example:
            >>> api.robot.group_read_status(key).read_user_ids  # doctest: +SKIP
            ('user1', 'user7')

        Raises:
            ConfigurationError: ``page_size`` outside 1..200 (nothing sent).
        """
        return self._read_pages(
            "/v1.0/robot/groupMessages/query", process_query_key, open_conversation_id, page_size
        )

    def private_chat_read_status(
        self,
        process_query_key: str,
        *,
        open_conversation_id: Optional[str] = None,
        page_size: int = MAX_READ_PAGE,
    ) -> ConversationReadStatus:
        """Who has read a ``send_to_private_chat`` message, every page of it.

        Example:
            >>> api.robot.private_chat_read_status(key).read_user_ids  # doctest: +SKIP
            ('user2',)
        """
        return self._read_pages(
            "/v1.0/robot/privateChatMessages/query",
            process_query_key,
            open_conversation_id,
            page_size,
        )

    def _read_pages(
        self,
        path: str,
        process_query_key: str,
        open_conversation_id: Optional[str],
        page_size: int,
    ) -> ConversationReadStatus:
        _require(process_query_key, "process_query_key")
        if not isinstance(page_size, int) or not 1 <= page_size <= MAX_READ_PAGE:
            raise ConfigurationError(
                f"page_size must be 1..{MAX_READ_PAGE} (DingTalk's maxResults), not {page_size!r}"
            )
        payload: Dict[str, Any] = {
            "robotCode": self.robot_code,
            "processQueryKey": process_query_key,
            "maxResults": page_size,
        }
        if open_conversation_id:
            payload["openConversationId"] = open_conversation_id
        readers: List[str] = []
        seen_tokens = set()
        send_status = ""
        while True:
            body = self._http.api("POST", path, json=payload)
            send_status = str(body.get("sendStatus", send_status))
            readers.extend(_strings(body.get("readUserIds")))
            token = body.get("nextToken")
            if not body.get("hasMore") or not token or token in seen_tokens:
                break  # a repeated token would loop forever: what was read so far is returned
            seen_tokens.add(token)
            payload["nextToken"] = token
        return ConversationReadStatus(send_status=send_status, read_user_ids=tuple(readers))

    def download_url(self, download_code: str) -> str:
        """The temporary URL of a file a user sent to the robot (``content.downloadCode``).

        Example:
            >>> api.robot.download_url(msg.download_code)  # doctest: +SKIP
            'https://...'
        """
        _require(download_code, "download_code")
        body = self._http.api(
            "POST",
            "/v1.0/robot/messageFiles/download",
            json={"downloadCode": download_code, "robotCode": self.robot_code},
        )
        url = body.get("downloadUrl")
        if not isinstance(url, str) or not url:
            raise ApiError(200, "InvalidResponse", "messageFiles/download returned no downloadUrl")
        return url

    def download(
        self,
        download_code: str,
        dest: Union[str, os.PathLike[str]],
        *,
        progress: Optional[Progress] = None,
    ) -> str:
        """Download a received file to ``dest`` (a file path, or a directory to put it in).

        The bytes are streamed to a temporary file next to ``dest`` and renamed into place
        when complete, so ``dest`` is never a partial file. ``progress(done, total)`` is called
        after each chunk (``total`` is None when unknown). Returns the final path.

        Example:
            >>> api.robot.download(code, "/tmp/report.pdf")  # doctest: +SKIP
            '/tmp/report.pdf'
        """
        path = os.fspath(dest)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(path) and not os.path.isdir(parent):
            raise ConfigurationError(f"cannot download to {path!r}: {parent!r} is not a directory")
        url = self.download_url(download_code)
        if os.path.isdir(path):
            name = os.path.basename(url.split("?", 1)[0]) or "download"
            path = os.path.join(path, name)
        self._http.download_to(url, path, progress=progress)
        return path


def _require(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string")


def _key_list(keys: Sequence[str]) -> List[str]:
    if isinstance(keys, str):
        return [keys]
    result = [str(k) for k in keys]
    if not result:
        raise ConfigurationError("process_query_keys is empty")
    return result


def _recall(body: Mapping[str, Any]) -> RecallResult:
    failed = body.get("failedResult") or {}
    return RecallResult(
        succeeded=_strings(body.get("successResult")),
        failed={str(k): str(v) for k, v in failed.items()} if isinstance(failed, dict) else {},
    )
