"""Nightly report: a cron job that posts a markdown summary to a group chat.

It builds a short status report of this machine (disk, load, uptime) and sends it with the app
robot. Tokens are kept in a FileTokenCache, so frequent cron runs reuse one token instead of
fetching a new one every time (DingTalk asks apps not to call the token endpoint often).

Configuration (environment)::

    DINGTALK_CLIENT_ID, DINGTALK_CLIENT_SECRET   the app's credentials
    REPORT_CONVERSATION_ID                       the group's openConversationId (cid...)
    REPORT_TITLE                                 optional, default "Nightly report"
    REPORT_TOKEN_CACHE                           optional, default <tmp>/dingsync-tokens.json
    DINGTALK_OPENAPI_ENDPOINT, DINGTALK_OAPI_ENDPOINT   optional, e.g. an emulator

Crontab::

    15 2 * * *  . /etc/dingsync.env && python /opt/app/examples/nightly_report.py

Exit codes: 0 sent, 1 DingTalk refused, 2 configuration error, 3 network error.

Example:
    >>> text = build_report(disk_path="/", now=0.0)
    >>> text.splitlines()[0]
    '### Nightly report for ...'
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from typing import Optional

import dingsync
from dingsync import messages as m
from dingsync.errors import ConfigurationError, DingSyncError, TransportError

__all__ = ["build_report", "main"]


def build_report(*, disk_path: str = "/", now: Optional[float] = None) -> str:
    """The markdown body: host, time, disk usage and load average."""
    moment = time.gmtime(time.time() if now is None else now)
    usage = shutil.disk_usage(disk_path)
    used = 100.0 * usage.used / usage.total if usage.total else 0.0
    lines = [
        f"### Nightly report for {platform.node() or 'this host'}",
        f"- time: {time.strftime('%Y-%m-%d %H:%M UTC', moment)}",
        f"- disk {disk_path}: {used:.0f}% used ({usage.free // 2**30} GiB free)",
    ]
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()
        lines.append(f"- load: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    status = "**attention**: disk above 90%" if used > 90 else "all good"
    lines.append(f"\n{status}")
    return "\n".join(lines)


def main() -> int:
    """Send the report; returns the process exit code."""
    try:
        conversation = os.environ.get("REPORT_CONVERSATION_ID", "")
        if not conversation:
            raise ConfigurationError("set REPORT_CONVERSATION_ID to the group's openConversationId")
        cache = dingsync.FileTokenCache(os.environ.get("REPORT_TOKEN_CACHE") or None)
        title = os.environ.get("REPORT_TITLE") or "Nightly report"
        with dingsync.ApiClient(dingsync.Credentials.from_env(), token_cache=cache) as api:
            key = api.robot.send_to_group(conversation, m.Markdown(title, build_report()))
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except TransportError as exc:
        print(f"network error: {exc}", file=sys.stderr)
        return 3
    except DingSyncError as exc:
        print(f"DingTalk refused the report: {exc}", file=sys.stderr)
        return 1
    print(f"report sent (processQueryKey {key})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
