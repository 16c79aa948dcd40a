"""Work notification from cron: tell a list of people that a job finished (工作通知).

A work notification is sent by the app itself and lands in each user's "Work notification"
chat, not in a group. It needs the app's AgentId (developer console: the app's Credentials &
Basic Info page); an internal app has the permission by default, nothing to apply for.
DingTalk answers "success" even when it skips someone; this script asks for the task's result
and lists who was skipped and why.

Configuration (environment)::

    DINGTALK_CLIENT_ID, DINGTALK_CLIENT_SECRET   the app's credentials
    DINGTALK_AGENT_ID                            the app's AgentId
    NOTICE_USERS                                 comma-separated user ids, e.g. "manager593,u2"
    DINGTALK_OPENAPI_ENDPOINT, DINGTALK_OAPI_ENDPOINT   optional, e.g. an emulator

Crontab::

    30 6 * * *  . /etc/dingsync.env && python /opt/app/examples/work_notice.py "Backup done"

Exit codes: 0 at least one user got it, 1 nobody did (or DingTalk refused), 2 configuration
error, 3 network error.

Example:
    >>> notice("Backup done", now=0.0).title
    'Backup done'
"""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import List, Optional

import dingsync
from dingsync import messages as m
from dingsync.errors import ConfigurationError, DingSyncError, TransportError

__all__ = ["notice", "recipients", "main"]


def notice(title: str, *, now: Optional[float] = None) -> m.Markdown:
    """The notification: a title, the host and the time."""
    moment = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() if now is None else now))
    return m.Markdown(title, f"### {title}\n- host: {platform.node() or 'unknown'}\n- {moment}")


def recipients() -> List[str]:
    """The user ids of ``NOTICE_USERS``."""
    users = [u.strip() for u in os.environ.get("NOTICE_USERS", "").split(",") if u.strip()]
    if not users:
        raise ConfigurationError("set NOTICE_USERS to a comma-separated list of user ids")
    return users


def main(argv: List[str]) -> int:
    """Send the notification; returns the process exit code."""
    title = " ".join(argv) or "Job finished"
    try:
        users = recipients()
        cache = dingsync.FileTokenCache()  # cron runs share one token
        with dingsync.ApiClient(dingsync.Credentials.from_env(), token_cache=cache) as api:
            task_id = api.notify.send(notice(title), user_ids=users)  # agent id: env
            result = api.notify.send_result(task_id)
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except TransportError as exc:
        print(f"network error: {exc}", file=sys.stderr)
        return 3
    except DingSyncError as exc:
        print(f"DingTalk refused the notification: {exc}", file=sys.stderr)
        return 1
    skipped = set(result.skipped_user_ids)
    for entry in result.forbidden:
        print(f"skipped {entry.user_id}: forbidden (code {entry.code})", file=sys.stderr)
    for user in result.invalid_user_ids:
        print(f"skipped {user}: unknown user id", file=sys.stderr)
    delivered = [u for u in users if u not in skipped]
    print(f"notification {task_id} delivered to {len(delivered)} of {len(users)}")
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
