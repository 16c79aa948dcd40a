"""Work notifications (工作通知): the old-style ``corpconversation`` API (reference/openapi.md §6).

DingTalk answers "success" even when it drops a notification (duplicate content the same day,
more than 500 per person per day...). Only :meth:`NotifyApi.send_result` tells; its
``forbidden_user_ids`` are the recipients that were silently skipped.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Tuple

import attrs

from ..errors import ApiError, ConfigurationError
from ..messages import MessageLike, as_message, check_size
from ..metrics import counting
from ._http import HttpCore

__all__ = ["NotifyApi", "WorkNoticeResult", "ForbiddenEntry", "MAX_RECIPIENTS"]

MAX_RECIPIENTS = 5000


def _ids(value: Iterable[Any], name: str) -> Tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigurationError(f"{name} must be a list, not a single string")
    items = tuple(str(x) for x in value)
    for item in items:
        if not item or "," in item:
            raise ConfigurationError(f"{name} contains an invalid id {item!r}")
    return items


@attrs.frozen(kw_only=True)
class ForbiddenEntry:
    """Why one recipient was skipped: ``code`` 143106 duplicate content, 143105 daily quota,
    143103/143104 per-minute quota (retry later)."""

    user_id: str
    code: str
    count: int = 0


@attrs.frozen(kw_only=True)
class WorkNoticeResult:
    """The outcome of a work-notification task (``getsendresult``).

    Example:
        >>> WorkNoticeResult(forbidden_user_ids=("u1",)).all_delivered
        False
    """

    invalid_user_ids: Tuple[str, ...] = ()
    forbidden_user_ids: Tuple[str, ...] = ()
    failed_user_ids: Tuple[str, ...] = ()
    read_user_ids: Tuple[str, ...] = ()
    unread_user_ids: Tuple[str, ...] = ()
    invalid_dept_ids: Tuple[str, ...] = ()
    forbidden: Tuple[ForbiddenEntry, ...] = ()

    @property
    def all_delivered(self) -> bool:
        return not (self.invalid_user_ids or self.forbidden_user_ids or self.failed_user_ids)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> WorkNoticeResult:
        def strings(name: str) -> Tuple[str, ...]:
            return tuple(str(x) for x in data.get(name) or ())

        forbidden = tuple(
            ForbiddenEntry(
                user_id=str(item.get("userid", "")),
                code=str(item.get("code", "")),
                count=int(item.get("count") or 0),
            )
            for item in data.get("forbidden_list") or ()
            if isinstance(item, dict)
        )
        return cls(
            invalid_user_ids=strings("invalid_user_id_list"),
            forbidden_user_ids=strings("forbidden_user_id_list"),
            failed_user_ids=strings("failed_user_id_list"),
            read_user_ids=strings("read_user_id_list"),
            unread_user_ids=strings("unread_user_id_list"),
            invalid_dept_ids=strings("invalid_dept_id_list"),
            forbidden=forbidden,
        )


class NotifyApi:
    """``api.notify``: work notifications sent by the app (needs the app's ``agent_id``).

    Example:
        >>> task = api.notify.send("Payroll is out", agent_id=123, user_ids=["u1"])  # doctest: +SKIP
        >>> api.notify.send_result(task, agent_id=123).forbidden_user_ids  # doctest: +SKIP
        ()
    """

    def __init__(self, http: HttpCore) -> None:
        self._http = http

    def send(
        self,
        message: MessageLike,
        *,
        agent_id: int,
        user_ids: Iterable[str] = (),
        dept_ids: Iterable[str] = (),
        to_all: bool = False,
    ) -> int:
        """Send a work notification; returns the ``task_id`` for :meth:`send_result`.

        Not retried after a timeout (DingTalk has no idempotency key for it).

        Example:
            >>> api.notify.send(m.Markdown("Leave", "approved"), agent_id=123,  # doctest: +SKIP
            ...                 user_ids=["manager593"])
            256271667526
        """
        if isinstance(agent_id, bool) or not isinstance(agent_id, int) or agent_id <= 0:
            raise ConfigurationError(
                f"agent_id must be the app's numeric AgentId, got {agent_id!r}"
            )
        users = _ids(user_ids, "user_ids")
        depts = _ids(dept_ids, "dept_ids")
        if not (users or depts or to_all):
            raise ConfigurationError("give user_ids, dept_ids or to_all=True")
        if len(users) > MAX_RECIPIENTS:
            raise ConfigurationError(
                f"{len(users)} recipients; DingTalk allows {MAX_RECIPIENTS} per notification"
            )
        msg = as_message(message).to_work_notice()
        check_size("work notification", msg)
        body: Dict[str, Any] = {"agent_id": agent_id, "msg": msg}
        if users:
            body["userid_list"] = ",".join(users)
        if depts:
            body["dept_id_list"] = ",".join(depts)
        if to_all:
            body["to_all_user"] = True
        with counting("work_notification"):
            answer = self._http.oapi(
                "POST",
                "/topapi/message/corpconversation/asyncsend_v2",
                json=body,
                idempotent=False,
            )
        task_id = answer.get("task_id")
        if not isinstance(task_id, int):
            raise ApiError(200, "InvalidResponse", "asyncsend_v2 returned no task_id")
        return task_id

    def send_result(self, task_id: int, *, agent_id: int) -> WorkNoticeResult:
        """Who got a notification, and who was silently skipped (tasks of the last 24 h).

        Example:
            >>> api.notify.send_result(256271667526, agent_id=123).all_delivered  # doctest: +SKIP
            True
        """
        answer = self._http.oapi(
            "POST",
            "/topapi/message/corpconversation/getsendresult",
            json={"agent_id": agent_id, "task_id": task_id},
        )
        data = answer.get("send_result") or {}
        return WorkNoticeResult.from_wire(data if isinstance(data, dict) else {})
