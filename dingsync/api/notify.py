"""Work notifications (工作通知): the old-style ``corpconversation`` API (reference/openapi.md §6).

DingTalk answers "success" even when it drops a notification (duplicate content the same day,
more than 500 per person per day...). Only :meth:`NotifyApi.send_result` tells; its
``skipped_user_ids`` are the recipients that were silently skipped.

The app's AgentId comes from ``agent_id=`` (of the call or of the ApiClient) or the
``DINGTALK_AGENT_ID`` environment variable.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import attrs

from ..errors import ApiError, ConfigurationError
from ..limits import check_size
from ..messages import MessageLike, as_message
from ..metrics import counting
from ._http import HttpCore

__all__ = [
    "NotifyApi",
    "WorkNoticeResult",
    "ForbiddenEntry",
    "MAX_RECIPIENTS",
    "AGENT_ID_ENV",
    "agent_id_from_env",
    "parse_agent_id",
]

MAX_RECIPIENTS = 5000
AGENT_ID_ENV = "DINGTALK_AGENT_ID"
#: forbidden_list codes of the per-minute recipient quotas (internal apps, then ISV apps):
#: DingTalk asks to retry these later
FLOW_CONTROL_CODES = frozenset({"143103", "143104", "143203", "143204"})


def parse_agent_id(value: Any, source: str = "agent_id") -> int:
    """``value`` (an int or a string of digits) as an AgentId; ``source`` names it in errors.

    Example:
        >>> parse_agent_id("3180001")
        3180001
    """
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(
            f"{source} must be the app's numeric AgentId (developer console: the app's "
            f"Credentials & Basic Info page), got {value!r}"
        )
    return value


def agent_id_from_env() -> Optional[int]:
    """``DINGTALK_AGENT_ID`` as an int, or None when unset.

    Example:
        >>> import os; os.environ["DINGTALK_AGENT_ID"] = "3180001"
        >>> agent_id_from_env()
        3180001
        >>> del os.environ["DINGTALK_AGENT_ID"]

    Raises:
        ConfigurationError: the variable is set but is not a positive number.
    """
    raw = os.environ.get(AGENT_ID_ENV, "").strip()
    return parse_agent_id(raw, AGENT_ID_ENV) if raw else None


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

    @property
    def flow_controlled_user_ids(self) -> Tuple[str, ...]:
        """Skipped for the per-minute recipient quota (143103/143104): send again later."""
        return tuple(f.user_id for f in self.forbidden if f.code in FLOW_CONTROL_CODES)

    @property
    def skipped_user_ids(self) -> Tuple[str, ...]:
        """Every recipient DingTalk did not deliver to (invalid, forbidden, failed), once each.

        Example:
            >>> WorkNoticeResult(invalid_user_ids=("x",), failed_user_ids=("y", "x")).skipped_user_ids
            ('x', 'y')
        """
        ids = self.invalid_user_ids + self.forbidden_user_ids + self.failed_user_ids
        return tuple(dict.fromkeys(ids))

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

    def __init__(self, http: HttpCore, *, agent_id: Optional[int] = None) -> None:
        self._http = http
        self._agent_id = None if agent_id is None else parse_agent_id(agent_id, "agent_id")

    @property
    def agent_id(self) -> Optional[int]:
        """The default AgentId: the ApiClient's ``agent_id``, else ``$DINGTALK_AGENT_ID``."""
        return self._agent_id if self._agent_id is not None else agent_id_from_env()

    def _resolve(self, agent_id: Optional[int]) -> int:
        if agent_id is not None:
            return parse_agent_id(agent_id, "agent_id")
        default = self.agent_id
        if default is None:
            raise ConfigurationError(
                "work notifications need the app's AgentId: pass agent_id= or set "
                f"{AGENT_ID_ENV} (developer console: the app's Credentials & Basic Info page)"
            )
        return default

    def send(
        self,
        message: MessageLike,
        *,
        agent_id: Optional[int] = None,
        user_ids: Iterable[str] = (),
        dept_ids: Iterable[str] = (),
        to_all: bool = False,
    ) -> int:
        """Send a work notification; returns the ``task_id`` for :meth:`send_result`.

        ``agent_id`` defaults to the ApiClient's, else ``$DINGTALK_AGENT_ID``. Not retried
        after a timeout (DingTalk has no idempotency key for it). Mentions do not exist here.

        Example:
            >>> api.notify.send(m.Markdown("Leave", "approved"), agent_id=123,  # doctest: +SKIP
            ...                 user_ids=["manager593"])
            256271667526

        Raises:
            MessageTooLong: over 15,000 bytes (nothing sent).
            MentionNotSupported: the message @-mentions someone (nothing sent).
        """
        agent_id = self._resolve(agent_id)
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

    def send_result(self, task_id: int, *, agent_id: Optional[int] = None) -> WorkNoticeResult:
        """Who got a notification, and who was silently skipped (tasks of the last 24 h).

        Example:
            >>> api.notify.send_result(256271667526, agent_id=123).all_delivered  # doctest: +SKIP
            True
        """
        agent_id = self._resolve(agent_id)
        answer = self._http.oapi(
            "POST",
            "/topapi/message/corpconversation/getsendresult",
            json={"agent_id": agent_id, "task_id": task_id},
        )
        data = answer.get("send_result") or {}
        return WorkNoticeResult.from_wire(data if isinstance(data, dict) else {})
